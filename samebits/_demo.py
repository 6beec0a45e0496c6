"""``samebits demo``: what batching does to the bundled MiniLM's bits, with and
without the mode, and what the mode costs."""

from __future__ import annotations

import random
import statistics
import sys
import time
from importlib import resources

import torch

from samebits._mode import batch_invariant


def demo_texts() -> list[str]:
    text = resources.files("samebits.data").joinpath("demo_texts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _encode(model, texts: list[str], batch_size: int) -> torch.Tensor:
    return model.encode(
        texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
    )


def changed_when_batched(
    model, texts: list[str], batch_sizes=(2, 5, 8, 16, 32), shuffles: int = 2
) -> int:
    """How many texts get different bits in some batch than alone."""
    alone = [_encode(model, [t], 1)[0] for t in texts]
    changed: set[int] = set()
    rng = random.Random(0)
    for bs in batch_sizes:
        for _ in range(shuffles):
            idx = list(range(len(texts)))
            rng.shuffle(idx)
            out = _encode(model, [texts[i] for i in idx], bs)
            for row, i in enumerate(idx):
                a, b = out[row].contiguous(), alone[i].contiguous()
                if a.numpy().tobytes() != b.numpy().tobytes():
                    changed.add(i)
    return len(changed)


def throughput_ratio(model, texts: list[str], batch_size: int = 32, repeats: int = 5) -> float:
    """Median of interleaved (native time / invariant time): >1 means the mode is faster."""
    ratios = []
    _encode(model, texts, batch_size)
    with batch_invariant():
        _encode(model, texts, batch_size)
    for _ in range(repeats):
        t0 = time.perf_counter()
        _encode(model, texts, batch_size)
        t1 = time.perf_counter()
        with batch_invariant():
            _encode(model, texts, batch_size)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def run(out=sys.stdout) -> dict:
    from samebits.models import load_sentence_model

    model = load_sentence_model()
    texts = demo_texts()
    native = changed_when_batched(model, texts)
    with batch_invariant():
        inv = changed_when_batched(model, texts)
    ratio = throughput_ratio(model, texts)
    n = len(texts)
    rows = [
        ("native PyTorch", f"{native}/{n}", "1.00x"),
        ("samebits.batch_invariant()", f"{inv}/{n}", f"{ratio:.2f}x"),
    ]
    print("all-MiniLM-L6-v2 (bundled), mixed-length texts, batch sizes 2-32, shuffled", file=out)
    print(f"{'mode':<28} {'texts whose bits change when batched':>38} {'throughput':>11}", file=out)
    for mode, ch, tp in rows:
        print(f"{mode:<28} {ch:>38} {tp:>11}", file=out)
    return {
        "texts": n,
        "changed_native": native,
        "changed_invariant": inv,
        "throughput_ratio": ratio,
    }
