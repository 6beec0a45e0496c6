"""torch.compile under the mode: a compiled model runs eagerly in a thread in the mode,
through the mode's kernels, so it gets the eager mode's bits (never a compiled graph's
other bits without a word); outside the mode it stays compiled."""

import subprocess
import sys
import threading

import torch
import torch.nn as nn

import samebits


def model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 16), nn.Softmax(-1)
    ).eval()


def frames_compiled() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_a_model_compiled_before_the_mode_gets_the_eager_modes_bits_inside_it():
    m = model()
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    with samebits.batch_invariant():
        eager = m(x)
    compiled = torch.compile(m)  # inductor: C++ kernels of its own
    before = frames_compiled()
    with torch.no_grad():
        native_compiled = compiled(x)  # compiled and run before entering the mode
    assert frames_compiled() > before  # a graph really was compiled
    torch.testing.assert_close(native_compiled, eager, rtol=1e-5, atol=1e-6)
    with samebits.batch_invariant():
        inside = compiled(x)
        rows = [compiled(x[i : i + 1]) for i in range(5)]
    assert torch.equal(inside, eager)
    assert all(torch.equal(r[0], eager[i]) for i, r in enumerate(rows))
    with torch.no_grad():  # outside the mode it is the compiled graph again
        assert torch.equal(compiled(x), native_compiled)


def test_compiling_inside_the_mode_runs_eagerly_and_compiles_nothing():
    m = model()
    compiled = torch.compile(m, backend="eager")
    x = torch.randn(3, 16)
    before = frames_compiled()
    with samebits.batch_invariant():
        out = compiled(x)
        eager = m(x)
    assert torch.equal(out, eager) and frames_compiled() == before
    torch.testing.assert_close(compiled(x), m(x))  # outside: compiles and runs as before
    assert frames_compiled() > before


def test_another_threads_compiled_model_stays_compiled_while_this_thread_is_in_the_mode():
    def f(x):  # a code object of its own: dynamo has no graph cached for it
        return torch.softmax(x * 2.0, -1)

    compiled = torch.compile(f, backend="eager")
    x = torch.randn(3, 16)
    before = frames_compiled()
    entered, done, seen = threading.Event(), threading.Event(), []

    def hold():
        with samebits.batch_invariant():
            entered.set()
            done.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        entered.wait(60)
        seen.append(compiled(x))
    finally:
        done.set()
        t.join()
    assert frames_compiled() > before  # this thread, outside the mode, compiled


def test_compile_runs_eagerly_when_dynamo_is_first_imported_inside_the_mode():
    """In a fresh process: enter the mode, then compile (dynamo loads inside)."""
    code = (
        "import sys, torch, samebits\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "torch.manual_seed(0)\n"
        "m = torch.nn.Linear(4, 4)\n"
        "x = torch.arange(8.0).reshape(2, 4)\n"
        "with samebits.batch_invariant():\n"
        "    out = torch.compile(m, backend='eager')(x)\n"
        "    ref = m(x)\n"
        "from torch._dynamo.utils import counters\n"
        "print(torch.equal(out, ref), counters['stats']['unique_graphs'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "0"]
