"""The ``samebits`` command line: ``samebits demo | audit | env | record | verify | serve``."""

from __future__ import annotations

import argparse
import sys

from samebits.errors import RecordError, SamebitsError

# 0 ok / match; 1 findings / mismatch; 2 usage error or unusable record; 3 internal
# error (a bug: the traceback goes to stderr), so a crash never reads as a mismatch
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(SamebitsError):
    """A command-line argument names something unusable."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from samebits import _demo

    result = _demo.run(html=args.html, quiet=args.quiet)
    return EXIT_OK if result["ok_invariant"] else EXIT_FINDINGS


def _loader_factory(spec: str):
    """``--loader package.module:factory`` -> the factory (modules in the current
    directory are found, as ``python -m`` would)."""
    import os

    from samebits.models import import_spec

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    expected = "package.module:factory, a function taking num_workers"
    factory = import_spec(spec, "--loader", expected, UsageError)
    if not callable(factory):
        raise UsageError(
            f"--loader {spec!r}: {spec.partition(':')[2]!r} is not callable ({type(factory).__name__}); "
            "give a function taking num_workers"
        )
    return factory


def _workers(text: str) -> list[int]:
    try:
        counts = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        counts = []
    if not counts or any(w < 0 for w in counts):
        raise UsageError(f"--workers {text!r}: expected worker counts >= 0 like 0,2")
    return counts


def _cmd_audit(args: argparse.Namespace) -> int:
    from samebits.audit import audit, audit_loader
    from samebits.models import audit_target

    if not args.model and not args.loader:
        raise UsageError("give --model, --loader, or both")
    texts = _read_texts(args.input) if args.input else None
    model = inputs = name = None
    if args.model:
        model, inputs, name = audit_target(args.model, texts)
    if args.loader:
        report = audit_loader(
            _loader_factory(args.loader),
            workers=_workers(args.workers),
            repeats=args.repeats,
            max_batches=args.max_batches,
            seed=args.seed,
            model=model,
            quiet=args.quiet,
        )
        report.model = args.loader + (f" -> {name}" if name else "")
    else:
        report = audit(model, inputs, quiet=args.quiet)
        report.model = name
    if args.html:
        report.to_html(args.html)
    if args.json:
        print(report.to_json())
    elif not args.quiet:
        print(report.summary())
        if args.html:
            print(f"report: {args.html}")
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _read_json(path: str) -> dict:
    import json

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path!r} is not a JSON fingerprint: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path!r} is not a JSON fingerprint (expected an object)")
    return data


def _cmd_env(args: argparse.Namespace) -> int:
    import json

    from samebits.record import fingerprint as fp

    if args.diff:
        rows = fp.diff(_read_json(args.diff[0]), _read_json(args.diff[1]))
        if args.json:
            print(json.dumps(rows, indent=1, default=str))
        elif not rows:
            print("identical")
        else:
            for r in rows:
                mark = "BITS" if r["affects_bits"] else "    "
                print(f"{mark} {r['field']}: {r['a']!r} -> {r['b']!r}")
            n = sum(r["affects_bits"] for r in rows)
            print(f"\n{len(rows)} fields differ, {n} of them can change output bits (marked BITS)")
        return EXIT_FINDINGS if any(r["affects_bits"] for r in rows) else EXIT_OK
    from samebits._native import native_info

    data = fp.fingerprint()
    if args.json:
        print(json.dumps(data, indent=1, default=str))
    else:
        info = native_info()
        print(
            f"  kernels: {info['isa']} path (available here: {', '.join(info['available'])}"
            + (
                f"; explicit, not portable: {', '.join(info['explicit'])}"
                if info["explicit"]
                else ""
            )
            + f"; SAMEBITS_ISA={info['requested']}), build {info['build']} ({info['source']})"
        )
        for k, v in fp.flatten(data).items():
            print(f"{'*' if fp.affects_bits(k) else ' '} {k}: {v}")
        print(f"\nfingerprint id {fp.fingerprint_id(data)} (* = can change output bits)")
    return EXIT_OK


def _read_texts(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise UsageError(f"cannot read --input {path!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"--input {path!r} is not UTF-8 text (byte {e.start})") from e
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UsageError(f"--input {path!r} has no non-empty lines")
    return texts


def _cmd_record(args: argparse.Namespace) -> int:
    from samebits.record import tasks
    from samebits.record.determinism import deterministic
    from samebits.record.store import parse_tolerance, record

    texts = _read_texts(args.input)
    try:
        tol = parse_tolerance(args.tolerance)
    except ValueError as e:
        raise UsageError(str(e)) from e
    spec = tasks.resolve(args.model)
    runner = tasks.Runner(spec)
    from samebits.record.fingerprint import fingerprint

    with deterministic(args.seed):
        outs = runner.run(texts, quiet=args.quiet)
        env = fingerprint()
    named = {f"item.{i:06d}": t for i, t in enumerate(outs)}
    inputs = [{"text": t, "sha256": tasks.text_sha256(t)} for t in texts]
    path = record(
        named,
        args.out,
        tolerance=tol,
        environment=env,
        run=dict(spec, seed=args.seed),
        model_identity=runner.identity,
        inputs=inputs,
    )
    print(f"recorded {len(named)} outputs of {spec['model']} ({spec['task']}) to {path}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from samebits.errors import TamperError
    from samebits.record import tasks
    from samebits.record.determinism import deterministic
    from samebits.record.store import load_manifest, load_outputs, verify

    manifest = load_manifest(args.dir)
    load_outputs(args.dir, manifest)  # integrity first: a tampered record is unusable
    meta = manifest.get("meta") or {}
    run, inputs = meta.get("run"), meta.get("inputs")
    if not isinstance(run, dict) or not isinstance(inputs, list):
        raise RecordError(
            f"{args.dir}: the manifest has no 'run'/'inputs' metadata; verify it from Python with samebits.verify"
        )
    for i, item in enumerate(inputs):
        if not isinstance(item, dict) or tasks.text_sha256(str(item.get("text"))) != item.get(
            "sha256"
        ):
            raise TamperError(f"input {i}: its text does not match the SHA-256 in the manifest")
    seed = run.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RecordError(f"{args.dir}: the manifest's run seed {seed!r} is not an integer")
    runner = tasks.Runner(_verify_spec(args, run))
    from samebits.record.fingerprint import fingerprint

    with deterministic(seed):
        outs = runner.run([it["text"] for it in inputs], quiet=args.quiet)
        env = fingerprint()
    report = verify(args.dir, {f"item.{i:06d}": t for i, t in enumerate(outs)}, environment=env)
    if runner.identity != meta.get("model_identity"):
        report.ok = False
        report.problems.append(
            "the model's weights or config differ from the recorded model identity"
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        _print_verification(report)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _verify_spec(args: argparse.Namespace, run: dict) -> dict:
    """The model verify runs: --model, or the one the manifest names (a directory
    path only with --trust-record-model: a record must not make verify import code
    from a directory its author chose)."""
    from samebits.record import tasks

    task, named = run.get("task"), run.get("model")
    if args.model is not None:
        spec = tasks.resolve(args.model)
        if spec["task"] != task:
            raise UsageError(
                f"--model {args.model!r} is a {spec['task']!r} model; the record is {task!r}"
            )
        return dict(run, model=spec["model"])
    if not isinstance(named, str):
        raise RecordError(f"{args.dir}: the manifest's run names no model")
    if named != "minilm" and not args.trust_record_model:
        raise UsageError(
            f"the record names the model directory {named!r}; pass --model DIR to say which "
            "model to run, or --trust-record-model to load the one the record names"
        )
    return run


def _print_verification(r) -> None:
    verdict = "MATCH" if r.ok else "MISMATCH"
    how = "bitwise" if r.mode == "bitwise" else f"within tolerance {r.tolerance}"
    print(f"{verdict}: {r.total - r.mismatched}/{r.total} outputs bit-identical, compared {how}")
    if r.mismatched:
        print(
            f"  {r.mismatched} differ in bits, {r.out_of_tolerance} outside the tolerance; "
            f"first: {r.first}; max abs {r.max_abs:.3g}, max {r.max_ulp} ulp"
        )
    for p in r.problems:
        print(f"  problem: {p}")
    if r.fingerprint_diff:
        print("  environment differs from the recording in fields that can change bits:")
        for d in r.fingerprint_diff:
            print(f"    {d['field']}: {d['a']!r} -> {d['b']!r}")


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(
            "samebits serve needs the serve extra: pip install 'samebits[serve]'", file=sys.stderr
        )
        return EXIT_USAGE
    from samebits.serve import serve

    if args.max_batch_size < 1 or args.max_wait_ms < 0 or args.max_idle_ms < 0:
        raise UsageError("--max-batch-size must be >= 1, --max-wait-ms and --max-idle-ms >= 0")
    for flag in ("max_queue", "max_items", "max_tokens", "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.max_items > args.max_queue:
        raise UsageError(
            f"--max-items {args.max_items} exceeds --max-queue {args.max_queue}: "
            "such a request could never be queued"
        )
    if args.drain_timeout_s < 0:
        raise UsageError("--drain-timeout-s must be >= 0")
    if args.prefix_cache_mb < 0 or args.prefix_block_tokens < 1:
        raise UsageError("--prefix-cache-mb must be >= 0 (0: off), --prefix-block-tokens >= 1")
    serve(serve_config(args))
    return EXIT_OK


def serve_config(args: argparse.Namespace):
    """The ServeConfig of parsed ``serve`` arguments: each field from the flag of its
    name (the key from --api-key-file, SAMEBITS_API_KEY or --api-key)."""
    from dataclasses import fields

    from samebits.serve import ServeConfig

    kw = {f.name: getattr(args, f.name) for f in fields(ServeConfig) if f.name != "api_key"}
    return ServeConfig(**kw, api_key=_api_key(args))


def _api_key(args: argparse.Namespace) -> str | None:
    """--api-key-file, else SAMEBITS_API_KEY, else --api-key (visible in ps: avoid)."""
    import os

    if args.api_key_file:
        try:
            key = open(args.api_key_file, encoding="utf-8").read().strip()
        except OSError as e:
            raise UsageError(
                f"cannot read --api-key-file {args.api_key_file!r}: {e.strerror}"
            ) from e
        if not key:
            raise UsageError(f"--api-key-file {args.api_key_file!r} is empty")
        return key
    return os.environ.get("SAMEBITS_API_KEY") or args.api_key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samebits", description="Same input, same output bits.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="audit the bundled MiniLM before and after the mode")
    demo.add_argument("--html", default="samebits-demo.html", help="where to write the HTML report")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    aud = sub.add_parser(
        "audit", help="find out why a model's outputs differ (exit 0 clean, 1 findings, 2 usage)"
    )
    aud.add_argument(
        "--model",
        help="minilm, a local HF model directory, or package.module:factory; with --loader, "
        "also audited on the loader's first batch",
    )
    aud.add_argument(
        "--loader",
        metavar="PKG.MOD:FACTORY",
        help="audit a data pipeline: FACTORY(num_workers) returns a fresh DataLoader",
    )
    aud.add_argument("--workers", default="0,2", help="worker counts for --loader (default 0,2)")
    aud.add_argument("--repeats", type=int, default=2, help="passes per worker count (default 2)")
    aud.add_argument(
        "--max-batches", type=int, default=None, help="compare at most this many batches a pass"
    )
    aud.add_argument(
        "--seed", type=int, default=0, help="torch.manual_seed before each pass (default 0)"
    )
    aud.add_argument(
        "--input", metavar="FILE", help="texts, one per line (default: the demo texts)"
    )
    aud.add_argument("--json", action="store_true", help="print the report as JSON")
    aud.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report")
    aud.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    aud.set_defaults(func=_cmd_audit)

    env = sub.add_parser("env", help="print the environment fingerprint, or diff two")
    env.add_argument("--json", action="store_true", help="print JSON")
    env.add_argument(
        "--diff", nargs=2, metavar=("A.json", "B.json"), help="list fields that differ"
    )
    env.set_defaults(func=_cmd_env)

    rec = sub.add_parser("record", help="run a model over texts and store outputs as evidence")
    rec.add_argument("--input", required=True, metavar="FILE", help="one text per line (UTF-8)")
    rec.add_argument("--out", required=True, metavar="DIR", help="record directory to write")
    rec.add_argument(
        "--model", default="minilm", help="minilm (bundled) or a local HF model directory"
    )
    rec.add_argument(
        "--tolerance", default="bitwise", help="bitwise (default), ulp=N, or rtol=R,atol=A"
    )
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_cmd_record)

    ver = sub.add_parser(
        "verify",
        help="re-run a record and compare (exit 0 match, 1 mismatch, 2 unusable, 3 internal)",
    )
    ver.add_argument("dir", metavar="DIR")
    ver.add_argument(
        "--model",
        default=None,
        help="the model to run (minilm or a local directory), instead of the record's",
    )
    ver.add_argument(
        "--trust-record-model",
        action="store_true",
        help="load the model directory the record names (it may run code from it)",
    )
    ver.add_argument("--json", action="store_true")
    ver.add_argument("--quiet", action="store_true", help="no progress bar")
    ver.set_defaults(func=_cmd_verify)

    srv = sub.add_parser("serve", help="OpenAI-compatible server; answers never depend on batching")
    srv.add_argument(
        "--model", default="minilm", help="minilm (embeddings) or a local HF model directory"
    )
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="embeddings: items per batch; completions: rows decoding at once (default 32)",
    )
    srv.add_argument("--max-wait-ms", type=float, default=5.0)
    srv.add_argument(
        "--max-idle-ms",
        type=float,
        default=1.0,
        help="a batch also closes once no request has come for this long (default 1)",
    )
    srv.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="require 'Authorization: Bearer KEY', KEY read from PATH (or set SAMEBITS_API_KEY)",
    )
    srv.add_argument(
        "--api-key", default=None, help="as --api-key-file, but visible in ps: prefer the file"
    )
    srv.add_argument(
        "--max-queue",
        type=int,
        default=4096,
        help="items waiting for the model; a request that would pass it gets 503 + Retry-After",
    )
    srv.add_argument(
        "--max-items", type=int, default=2048, help="inputs or prompts per request (else 400)"
    )
    srv.add_argument(
        "--max-tokens", type=int, default=1024, help="max_tokens a completion may ask (else 400)"
    )
    srv.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="request body size, counted while reading, chunked included (else 413)",
    )
    srv.add_argument(
        "--drain-timeout-s",
        type=float,
        default=30.0,
        help="on SIGTERM: stop accepting, let in-flight requests finish this long, exit 0",
    )
    srv.add_argument(
        "--batching",
        choices=["continuous", "static"],
        default="continuous",
        help="completions: rows join and leave the decode batch every step (continuous, "
        "default), or a batch decodes until its longest row ends (static)",
    )
    srv.add_argument(
        "--prefix-cache-mb",
        type=float,
        default=256.0,
        help="memory for the keys and values of cached prompt prefixes, LRU (0: off; default 256)",
    )
    srv.add_argument(
        "--prefix-block-tokens",
        type=int,
        default=16,
        help="prefixes are cached and matched in blocks of this many tokens (default 16)",
    )
    srv.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="a causal LM's dtype (default auto: as loaded)",
    )
    srv.set_defaults(func=_cmd_serve)
    return p


def _version() -> str:
    from samebits import __version__

    return f"samebits {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except SamebitsError as e:
        print(f"samebits {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - a bug, not a verdict: exit 3, never 1 ("mismatch")
        import traceback

        traceback.print_exc()
        print(
            f"samebits {args.command}: internal error (exit {EXIT_INTERNAL}); "
            "the traceback above is a bug to report",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
