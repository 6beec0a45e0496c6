"""``samebits.record(outputs, path)`` and ``samebits.verify(path, outputs)``.

A record is a directory with ``outputs.safetensors`` and ``manifest.json``. The
manifest holds the SHA-256 of every output's bytes and of the outputs file, the
environment fingerprint, the tolerance policy and free metadata (inputs, model).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from samebits.errors import RecordError, TamperError
from samebits.record import fingerprint as fpmod
from samebits.record.compare import compare, raw_bytes

FORMAT = "samebits-record"
FORMAT_VERSION = 1
MANIFEST, OUTPUTS = "manifest.json", "outputs.safetensors"

Outputs = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _named(outputs: Outputs) -> dict[str, torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        named = {"output": outputs}
    elif isinstance(outputs, Mapping):
        named = dict(outputs)
    elif isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)):
        named = {f"output.{i:05d}": t for i, t in enumerate(outputs)}
    else:
        raise TypeError(
            f"outputs must be a tensor, a sequence or a mapping of tensors, not {type(outputs).__name__}"
        )
    for name, t in named.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(
                f"output {name!r} is a {type(t).__name__}, expected a torch.Tensor under a str name"
            )
    return {k: v.detach().cpu().contiguous() for k, v in named.items()}


def parse_tolerance(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """ "bitwise", "ulp=4", "rtol=1e-5,atol=1e-6" (or the dict form) -> policy dict."""
    if spec is None or spec == "bitwise":
        return {"mode": "bitwise"}
    if isinstance(spec, Mapping):
        spec = ",".join(f"{k}={v}" for k, v in spec.items() if k != "mode") or "bitwise"
        if spec == "bitwise":
            return {"mode": "bitwise"}
    parts = dict(p.split("=", 1) for p in str(spec).split(",") if "=" in p)
    try:
        if set(parts) == {"ulp"}:
            n = int(parts["ulp"])
            if n < 0:
                raise ValueError
            return {"mode": "ulp", "ulp": n}
        if parts and set(parts) <= {"rtol", "atol"}:
            return {
                "mode": "close",
                "rtol": float(parts.get("rtol", 0)),
                "atol": float(parts.get("atol", 0)),
            }
    except ValueError:
        pass
    raise ValueError(f"tolerance {spec!r}: expected 'bitwise', 'ulp=N' or 'rtol=R,atol=A'")


def record(
    outputs: Outputs,
    path: str | Path,
    *,
    tolerance: str | Mapping | None = None,
    environment: dict[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Store ``outputs`` with hashes, the fingerprint and ``meta`` under directory ``path``.

    ``environment``: the fingerprint of the run that produced the outputs (default:
    ``fingerprint()`` now; pass one taken inside ``deterministic()`` if you exit it first).
    """
    from safetensors.torch import save

    import samebits

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    named = _named(outputs)
    blob = save(named)
    fp = environment if environment is not None else fpmod.fingerprint()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "samebits_version": samebits.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fp,
        "fingerprint_id": fpmod.fingerprint_id(fp),
        "tolerance": parse_tolerance(tolerance),
        "outputs_file": {"name": OUTPUTS, "sha256": sha256(blob)},
        "outputs": [
            {
                "name": k,
                "dtype": str(v.dtype).removeprefix("torch."),
                "shape": list(v.shape),
                "sha256": sha256(raw_bytes(v)),
            }
            for k, v in named.items()
        ],
        "meta": json.loads(json.dumps(meta, default=str)),
    }
    (path / OUTPUTS).write_bytes(blob)
    (path / MANIFEST).write_text(
        json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


def load_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise RecordError(f"record {str(path)!r} is not a directory")
    mf = path / MANIFEST
    if not mf.is_file():
        raise RecordError(f"record {str(path)!r} has no {MANIFEST}")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise RecordError(f"{mf} is not UTF-8 text: {e.reason} at byte {e.start}") from e
    except json.JSONDecodeError as e:
        raise RecordError(
            f"{mf} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordError(f"{mf} is not a samebits record manifest (field 'format' != {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise RecordError(
            f"{mf}: format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}"
        )
    for key, kind in (
        ("outputs", list),
        ("outputs_file", dict),
        ("fingerprint", dict),
        ("tolerance", dict),
    ):
        if not isinstance(manifest.get(key), kind):
            raise RecordError(f"{mf}: field {key!r} is missing or not a {kind.__name__}")
    try:
        parse_tolerance(manifest["tolerance"])
    except ValueError as e:
        raise RecordError(f"{mf}: {e}") from e
    return manifest


def load_outputs(
    path: str | Path, manifest: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The stored outputs, after checking the file and every tensor against the manifest."""
    from safetensors.torch import load

    path = Path(path)
    manifest = manifest or load_manifest(path)
    f = path / OUTPUTS
    if not f.is_file():
        raise RecordError(f"record {str(path)!r} has no {OUTPUTS}")
    blob = f.read_bytes()
    # the hash first: bytes that do not match the manifest are never parsed
    if sha256(blob) != manifest["outputs_file"].get("sha256"):
        raise TamperError(
            f"{f} does not match the SHA-256 in {MANIFEST}: the outputs were modified after recording"
        )
    try:
        tensors = load(blob)
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds on bad bytes
        raise RecordError(f"{f} is truncated or corrupt ({len(blob)} bytes): {e}") from e
    entries = {e.get("name"): e for e in manifest["outputs"] if isinstance(e, dict)}
    if set(entries) != set(tensors):
        missing, extra = sorted(set(entries) - set(tensors)), sorted(set(tensors) - set(entries))
        raise TamperError(
            f"{MANIFEST} and {OUTPUTS} list different outputs (only in manifest: {missing[:3]}, only in file: {extra[:3]})"
        )
    for name, t in tensors.items():
        if sha256(raw_bytes(t)) != entries[name].get("sha256"):
            raise TamperError(
                f"output {name!r}: its bytes do not match the SHA-256 in {MANIFEST}: the manifest was modified"
            )
    return tensors


@dataclass
class Verification:
    """What ``verify`` found. ``ok`` is the verdict under ``mode``."""

    ok: bool
    mode: str  # "bitwise" or "tolerance"
    tolerance: dict[str, Any]
    total: int
    mismatched: int  # outputs whose bits differ
    out_of_tolerance: int  # outputs outside the tolerance (== mismatched in bitwise mode)
    first: str | None
    max_abs: float
    max_ulp: int
    fingerprint_diff: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _within(diff, a: torch.Tensor, b: torch.Tensor, tol: dict[str, Any]) -> bool:
    if diff.equal_bits:
        return True
    if tol["mode"] == "ulp":
        return diff.max_ulp <= tol["ulp"]
    if tol["mode"] == "close":
        return torch.allclose(
            a.double(), b.double(), rtol=tol["rtol"], atol=tol["atol"], equal_nan=True
        )
    return False


def verify(
    path: str | Path, outputs: Outputs, *, environment: dict[str, Any] | None = None
) -> Verification:
    """Compare ``outputs`` with the record at ``path``.

    Bitwise when the bit-affecting fingerprint fields match ``environment`` (default:
    ``fingerprint()`` now); otherwise within the recorded tolerance, with the diff reported.
    """
    manifest = load_manifest(path)
    stored = load_outputs(path, manifest)
    named = _named(outputs)
    problems = []
    current = environment if environment is not None else fpmod.fingerprint()
    fdiff = [d for d in fpmod.diff(manifest["fingerprint"], current) if d["affects_bits"]]
    tol = parse_tolerance(manifest["tolerance"])
    mode = "bitwise" if not fdiff else "tolerance"
    if set(named) != set(stored):
        problems.append(
            f"outputs differ in names: expected {len(stored)} ({sorted(stored)[:3]}...), got {len(named)}"
        )
    mismatched = out_tol = 0
    first, max_abs, max_ulp = None, 0.0, 0
    for name in sorted(set(named) & set(stored)):
        a, b = stored[name], named[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(
                f"output {name!r}: recorded {a.dtype} {tuple(a.shape)}, got {b.dtype} {tuple(b.shape)}"
            )
            mismatched += 1
            out_tol += 1
            first = first or name
            continue
        d = compare(a, b)
        if d.equal_bits:
            continue
        mismatched += 1
        first = first or name
        max_abs = max(max_abs, d.max_abs if math.isfinite(d.max_abs) else float("inf"))
        max_ulp = max(max_ulp, d.max_ulp)
        if mode == "bitwise" or not _within(d, a, b, tol):
            out_tol += 1
    ok = not problems and out_tol == 0
    return Verification(
        ok, mode, tol, len(stored), mismatched, out_tol, first, max_abs, max_ulp, fdiff, problems
    )
