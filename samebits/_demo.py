"""``samebits demo``: audit the bundled MiniLM without and with the mode, count the
texts whose bits change when batched, and measure what the mode costs."""

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
                if not torch.equal(out[row].view(torch.int32), alone[i].view(torch.int32)):
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


def run(html: str | None = "samebits-demo.html", quiet: bool = False, out=sys.stdout) -> dict:
    from samebits.audit import audit, render_html
    from samebits.models import SentenceEmbedder, load_sentence_model, tokenize_for

    st = load_sentence_model()
    texts = demo_texts()
    model, inputs = SentenceEmbedder(st), tokenize_for(st, texts[:8])
    native = audit(model, inputs, quiet=quiet)
    with batch_invariant():
        inv = audit(model, inputs, quiet=quiet)
    for r in (native, inv):
        r.model = "all-MiniLM-L6-v2 (bundled)"
    changed_native = changed_when_batched(st, texts)
    with batch_invariant():
        changed_inv = changed_when_batched(st, texts)
    ratio = throughput_ratio(st, texts)

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("samebits demo: all-MiniLM-L6-v2 (bundled), real weights, CPU\n")
    p("audit without the mode:")
    p(native.table())
    p("\naudit under samebits.batch_invariant():")
    p(inv.table())
    n = len(texts)
    p(f"\n{'':<28} {'texts whose bits change when batched':>38} {'throughput':>11}")
    p(f"{'native PyTorch':<28} {f'{changed_native}/{n}':>38} {'1.00x':>11}")
    p(f"{'samebits.batch_invariant()':<28} {f'{changed_inv}/{n}':>38} {f'{ratio:.2f}x':>11}")
    for f in native.failed():
        p(f"\n- {f.check}: {f.detail}")
    if html:
        from pathlib import Path

        Path(html).write_text(
            render_html([("Without the mode", native), ("Under samebits.batch_invariant()", inv)]),
            encoding="utf-8",
        )
        p(f"\nHTML report: {html}")
    return {
        "native_ok": native.ok,
        "ok_invariant": inv.ok and changed_inv == 0,
        "changed_native": changed_native,
        "changed_invariant": changed_inv,
        "throughput_ratio": ratio,
        "texts": n,
    }
