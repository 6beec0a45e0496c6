"""``samebits serve`` settings: one frozen dataclass, one CLI flag per field."""

from __future__ import annotations

from dataclasses import dataclass

BATCHING = ("continuous", "static")


@dataclass(frozen=True)
class ServeConfig:
    """``samebits serve`` settings; each CLI flag maps to one field (``--max-batch-size``
    to ``max_batch_size``; the key also comes from --api-key-file or SAMEBITS_API_KEY)."""

    model: str = "minilm"
    host: str = "127.0.0.1"
    port: int = 8000
    # completions: rows decoding at once (continuous) or items per batch (static)
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_idle_ms: float = 1.0
    api_key: str | None = None
    max_items: int = 2048  # inputs, or prompts x n choices, per request
    max_tokens: int = 1024  # completion tokens per choice
    max_body_bytes: int = 4 * 1024 * 1024
    max_queue: int = 4096  # items waiting for the worker; more -> 503 + Retry-After
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take
    # continuous: rows join and leave the decode batch every step; static: a batch
    # decodes until its longest row ends (the server before continuous batching)
    batching: str = "continuous"
    prefix_cache_mb: float = 256.0  # keys/values of prompt prefixes kept (0: no prefix cache)
    prefix_block_tokens: int = 16  # prefixes are cached and matched in blocks of this many tokens
    dtype: str = "auto"  # a causal LM's dtype: auto (as saved), float32 or bfloat16
