"""What ``samebits record`` runs: a model named on the command line over texts.

Tasks:
* ``embed``: a sentence-transformers model (the bundled MiniLM by default); one
  float32 embedding per text.
* ``lm-logits``: a local Hugging Face causal LM directory; the logits of each
  text's last token.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from samebits.models import (
    ModelLoadError,
    is_sentence_model_dir,
    load_causal_lm,
    load_sentence_model,
)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_identity(module: torch.nn.Module, config: Any = None) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) and the config."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if config is not None:
        cfg = config.to_dict() if hasattr(config, "to_dict") else config
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _progress(items: Iterable, total: int, desc: str, quiet: bool) -> Iterable:
    if quiet or total < 64 or not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, unit="text", file=sys.stderr)


def resolve(model: str) -> dict[str, Any]:
    """Model spec from the CLI -> task description stored in the manifest."""
    if model == "minilm":
        return {"task": "embed", "model": "minilm"}
    path = Path(model)
    if not path.is_dir():
        raise ModelLoadError(f"--model {model!r}: expected 'minilm' or a local model directory")
    task = "embed" if is_sentence_model_dir(path) else "lm-logits"
    return {"task": task, "model": str(path.resolve())}


class Runner:
    """Loads the model once; ``run(texts)`` -> one tensor per text."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        if spec["task"] == "embed":
            self.model = load_sentence_model(None if spec["model"] == "minilm" else spec["model"])
            module, config = self.model, self.model[0].auto_model.config
        elif spec["task"] == "lm-logits":
            self.model, self.tokenizer = load_causal_lm(spec["model"])
            if self.tokenizer is None:
                raise ModelLoadError(
                    f"{spec['model']!r} has no tokenizer: recording texts needs one"
                )
            module, config = self.model, self.model.config
        else:
            raise ModelLoadError(f"unknown task {spec['task']!r} in the record")
        self.identity = model_identity(module, config)

    @torch.inference_mode()
    def run(
        self, texts: list[str], batch_size: int = 32, quiet: bool = False
    ) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        starts = range(0, len(texts), batch_size)
        for s in _progress(starts, len(starts), "samebits", quiet or len(texts) < 64):
            chunk = texts[s : s + batch_size]
            if self.spec["task"] == "embed":
                emb = self.model.encode(
                    chunk, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
                )
                out.extend(e.float().clone() for e in emb)
            else:
                for t in chunk:  # one at a time: no padding question at all
                    ids = self.tokenizer(t, return_tensors="pt")
                    out.append(self.model(**ids).logits[0, -1].float().clone())
        return out
