"""torch.compile under the mode: refused loudly (never other bits without a word)."""

import pytest
import torch
import torch.nn as nn

import samebits
from samebits.errors import NotInvariantError


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.Softmax(-1)).eval()


def test_compiling_under_the_mode_raises_not_invariant():
    compiled = torch.compile(model(), backend="eager")  # dynamo traces; no C++ build
    x = torch.randn(3, 16)
    with pytest.raises(NotInvariantError, match="torch.compile.*inductor"):
        with samebits.batch_invariant():
            compiled(x)
    assert not samebits.is_batch_invariant() and samebits._mode.uninstall_if_idle()
    # outside the mode, compiling works as before
    torch.testing.assert_close(compiled(x), model()(x))


def test_eager_under_the_mode_is_unaffected_by_the_hook():
    m = model()
    x = torch.randn(4, 16)
    with samebits.batch_invariant():
        a = m(x)
        b = m(x[1:2])
    assert torch.equal(a[1:2], b)


def test_compile_refused_when_dynamo_is_first_imported_inside_the_mode(tmp_path):
    """In a fresh process: enter the mode, then compile (dynamo loads inside)."""
    import subprocess
    import sys

    code = (
        "import sys, torch, samebits\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "m = torch.nn.Linear(4, 4)\n"
        "try:\n"
        "    with samebits.batch_invariant():\n"
        "        torch.compile(m, backend='eager')(torch.randn(2, 4))\n"
        "except samebits.NotInvariantError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: torch.compile" in out.stdout
