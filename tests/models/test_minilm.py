"""The real all-MiniLM-L6-v2 through sentence-transformers: every text's embedding
has the same bits alone and inside shuffled, padded batches of 1..12, at 1..3 threads."""

import random

import pytest
import torch

import samebits
from samebits.models import load_sentence_model
from tests.conftest import same_bits

TEXTS = [
    "hello",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Floating-point addition is not associative, so the order of a reduction changes its bits.",
    "samebits makes inference reproducible.",
    "Short text.",
    "Batch size, position in the batch and padding must not change the output of a model "
    "that is asked the same question twice; this longer sentence forces plenty of padding.",
    "numbers 1 2 3 4 5 6 7 8 9 10",
    "émojis and accents: café naïve 😀",
    "Another medium-length sentence about deterministic inference on CPUs.",
    "x",
    "Why do identical inputs give different outputs?",
    "The end.",
]


@pytest.fixture(scope="module")
def model():
    return load_sentence_model()


def encode(model, texts, bs):
    return model.encode(texts, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)


def test_native_minilm_is_batch_variant(model):
    """The problem, measured: without the mode some texts change bits when batched."""
    alone = [encode(model, [t], 1)[0] for t in TEXTS]
    batched = encode(model, TEXTS, 13)
    assert sum(not same_bits(a, b) for a, b in zip(alone, batched, strict=True)) > 0


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_minilm_is_invariant_under_the_mode(model, nthreads, threads):
    with samebits.batch_invariant():
        threads(1)
        alone = [encode(model, [t], 1)[0] for t in TEXTS]
        threads(nthreads)
        rng = random.Random(nthreads)
        for bs in range(1, 13):
            idx = list(range(len(TEXTS)))
            rng.shuffle(idx)
            out = encode(model, [TEXTS[i] for i in idx], bs)
            for row, i in enumerate(idx):
                assert same_bits(out[row], alone[i]), f"text {i} batch_size={bs} threads={nthreads}"


def test_minilm_under_mode_stays_close_to_native(model):
    native = encode(model, TEXTS, 4)
    with samebits.batch_invariant():
        ours = encode(model, TEXTS, 4)
    torch.testing.assert_close(ours, native, rtol=1e-4, atol=1e-5)


def test_minilm_same_bits_in_a_new_process(model, tmp_path):
    import subprocess
    import sys

    with samebits.batch_invariant():
        here = encode(model, TEXTS[:4], 3)
    code = (
        "import sys, torch, samebits; from samebits.models import load_sentence_model;"
        "m = load_sentence_model();"
        "texts = [l.rstrip('\\n') for l in open(sys.argv[1], encoding='utf-8')];"
        "ctx = samebits.batch_invariant(); ctx.__enter__();"
        "torch.save(m.encode(texts, batch_size=1, convert_to_tensor=True), sys.argv[2])"
    )
    (tmp_path / "t.txt").write_text("\n".join(TEXTS[:4]) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.txt"), str(tmp_path / "o.pt")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert same_bits(torch.load(tmp_path / "o.pt"), here)
