"""Whole models under the mode vs native: `python benchmarks/bench_models.py`.

* MiniLM (the bundled all-MiniLM-L6-v2 through sentence-transformers): texts/s at
  batch 1, 8 and 32 over mixed-length texts.
* MiniLM at batch 1 with the mode entered and left around every call.
* A small random-weight Llama (4 layers, hidden 512, GQA): greedy decode tokens/s
  with the KV cache at batch 1, 8 and 32, left-padded prompts of mixed lengths.
  Decode time = time(generate 33 tokens) - time(generate 1 token), so prefill is
  excluded.
* Peak RSS of the MiniLM batch-32 workload and of the bfloat16 Llama decode at batch
  8, native vs the mode, each in a fresh process.

Ratio = native time / invariant time (speed ratio), median of interleaved repeats.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import samebits  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, interleaved, ratio, table  # noqa: E402

from samebits._demo import demo_texts  # noqa: E402
from samebits.models import load_sentence_model  # noqa: E402


def texts(n: int = 64) -> list[str]:
    base = demo_texts()
    return [base[i % len(base)] + (" again" * (i // len(base))) for i in range(n)]


def minilm(rows: list[list[str]]) -> None:
    model = load_sentence_model()
    ts = texts()

    def run(batch: int) -> None:
        with torch.inference_mode():
            model.encode(ts, batch_size=batch, convert_to_tensor=True, show_progress_bar=False)

    for batch in (1, 8, 32):
        r = ratio(lambda b=batch: run(b), repeats=7, min_time=0.0)
        rows.append([f"MiniLM texts/s, batch {batch}, {len(ts)} mixed-length texts", f"{r:.2f}"])
        print(rows[-1], flush=True)


def minilm_entered_per_call(rows: list[list[str]]) -> None:
    """One text per call with ``with batch_invariant():`` around each call (a server or
    a loop that enters the mode per request): the mode's entry and exit are timed."""
    model = load_sentence_model()
    ts = texts(16)

    def calls(mode: bool) -> float:
        t = time.perf_counter()
        for text in ts:
            with samebits.batch_invariant(mode), torch.inference_mode():
                model.encode([text], convert_to_tensor=True, show_progress_bar=False)
        return time.perf_counter() - t

    calls(False), calls(True)
    r = interleaved(lambda: calls(False), lambda: calls(True), repeats=7)
    rows.append(["MiniLM texts/s, batch 1, the mode entered per call", f"{r:.2f}"])
    print(rows[-1], flush=True)


def tiny_llama():
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=8000,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def llama(
    rows: list[list[str]], dtype: torch.dtype, new_tokens: int = 32, repeats: int = 5
) -> None:
    model = tiny_llama().to(dtype)
    name = str(dtype).split(".")[1]
    g = torch.Generator().manual_seed(0)
    for batch in (1, 8, 32):
        lengths = [8 + (7 * i) % 25 for i in range(batch)]
        L = max(lengths)
        ids = torch.randint(3, 8000, (batch, L), generator=g)
        mask = torch.zeros(batch, L, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, L - n :] = 1  # left padding
        ids = ids * mask

        def gen(n: int, ids=ids, mask=mask) -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=0,
                )
            return time.perf_counter() - t

        gen(2)
        with samebits.batch_invariant():
            gen(2)
        rs = []
        for _ in range(repeats):
            native = gen(new_tokens + 1) - gen(1)
            with samebits.batch_invariant():
                inv = gen(new_tokens + 1) - gen(1)
            rs.append(native / inv)
        r = statistics.median(rs)
        rows.append([f"Llama decode tokens/s, {name}, batch {batch} (KV cache)", f"{r:.2f}"])
        print(rows[-1], flush=True)


RSS_WORKLOADS = {"minilm": "MiniLM batch 32", "llama": "Llama bfloat16 decode batch 8"}


def rss_child(workload: str, mode: str) -> None:
    """Run one workload (RSS_WORKLOADS) and print peak RSS (KiB) as JSON."""
    with samebits.batch_invariant(mode == "invariant"), torch.inference_mode():
        if workload == "minilm":
            model, ts = load_sentence_model(), texts()
            for _ in range(3):
                model.encode(ts, batch_size=32, convert_to_tensor=True, show_progress_bar=False)
        else:
            model = tiny_llama().to(torch.bfloat16)
            ids = torch.randint(3, 8000, (8, 24), generator=torch.Generator().manual_seed(0))
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=32,
                           min_new_tokens=32, do_sample=False, pad_token_id=0)  # fmt: skip
    print(json.dumps({"maxrss_kib": peak_rss_kib()}))


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that across fork and exec, so a child started by a big parent reports the parent's
    peak (both modes then read the same number)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss(rows: list[list[str]]) -> None:
    for workload, name in RSS_WORKLOADS.items():
        peak = {}
        for mode in ("native", "invariant"):
            out = subprocess.run(
                [sys.executable, __file__, "--rss", workload, mode],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            peak[mode] = json.loads(out.strip().splitlines()[-1])["maxrss_kib"]
        growth = peak["invariant"] / peak["native"] - 1
        rows.append(
            [
                f"{name} peak RSS: native {peak['native'] / 1024:.0f} MiB, "
                f"invariant {peak['invariant'] / 1024:.0f} MiB",
                f"{growth:+.1%}",
            ]
        )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--rss":
        rss_child(sys.argv[2], sys.argv[3])
        return
    print(header("bench_models: whole models, invariant / native"))
    rows: list[list[str]] = []
    minilm(rows)
    minilm_entered_per_call(rows)
    llama(rows, torch.float32)
    llama(rows, torch.bfloat16)
    rss(rows)
    print(table(rows, ["workload", "invariant/native speed (RSS: growth)"]))


if __name__ == "__main__":
    main()
