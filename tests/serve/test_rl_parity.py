"""docs/examples/rl_parity.py end to end: `samebits serve` with a tiny Llama samples a
group of n = 4 with logprobs through the openai client; a trainer in another process
recomputes them (autograd on, under the mode, the group right-padded in one batch):
bitwise equal, in float32 and bfloat16; then it takes a policy-gradient step under the
mode (loss.backward() and an SGD step)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "rl_parity.py"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampler_and_trainer_logprobs_are_bitwise_equal(chat_llama_dir, dtype):
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--model", str(chat_llama_dir), "--dtype", dtype],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "4/4 choices bitwise equal" in out.stdout
    step = re.search(r"grad norm ([0-9.e+-]+), (\d+) parameter tensors updated", out.stdout)
    assert step and float(step.group(1)) > 0 and int(step.group(2)) > 0
    tokens = [int(n) for n in re.findall(r"choice \d: (\d+) tokens", out.stdout)]
    assert len(tokens) == 4 and sum(tokens) >= 24  # real tokens were compared
