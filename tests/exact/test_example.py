import subprocess
import sys
from pathlib import Path


def test_parallel_sum_example_is_identical_for_1_to_8_processes():
    script = Path(__file__).parents[2] / "docs" / "examples" / "parallel_sum.py"
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "samebits: identical for 1 to 8 processes" in p.stdout
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == 8 and len({r[2] for r in rows}) == 1
