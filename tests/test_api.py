import re
from pathlib import Path

import samebits


def test_all_is_sorted_and_exported():
    assert samebits.__all__ == sorted(samebits.__all__)
    for name in samebits.__all__:
        assert hasattr(samebits, name), name


def test_all_matches_the_documented_api():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## API", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`samebits\.([A-Za-z_]+)(?![.\w])", section))
    assert documented == set(samebits.__all__) - {"__version__"}


def test_submodules_the_readme_names_are_attributes_of_a_plain_import():
    """`import samebits` then `samebits.data.item_generator(...)`, as the README spells it,
    in a fresh process (nothing else imported the submodule first)."""
    import subprocess
    import sys

    code = (
        "import sys, samebits\n"
        "assert 'samebits.data' not in sys.modules and 'dask' not in sys.modules\n"
        "g = samebits.data.item_generator(3, seed=1)\n"
        "print(type(g).__name__, callable(samebits.distributed.all_reduce_exact),\n"
        "      callable(samebits.testing.assert_batch_invariant))\n"
        "try:\n"
        "    samebits.nonexistent\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "Generator True True",
        "module 'samebits' has no attribute 'nonexistent'",
    ]
