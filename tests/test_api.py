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
