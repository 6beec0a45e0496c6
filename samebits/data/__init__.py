"""Randomness in a data pipeline that is a function of the item, not of the worker.

torch's DataLoader gives worker k the seed ``base_seed + k`` (and seeds numpy and
Python from it), so a random transform of item i depends on which worker drew it,
how many workers there are and what that worker drew before. Drawing from
``item_generator(index, seed=seed)`` makes the draw a function of (seed, index)
alone: the same bits for any ``num_workers``, any order and any epoch of a pass.

    def __getitem__(self, index):
        g = samebits.data.item_generator(index, seed=self.seed)
        return self.x[index] + 0.1 * torch.randn(self.x[index].shape, generator=g)

For code that cannot change (a transform that calls ``torch.rand``, ``np.random``
or ``random``), ``seeded_items(dataset, seed=0)`` seeds the three global RNGs from
(seed, index) around each ``__getitem__``. ``worker_init_fn`` only seeds numpy and
Python per worker: reproducible for a fixed ``num_workers``, still worker-dependent.
"""

from __future__ import annotations

import hashlib
import operator
import random
from typing import Any

import torch

__all__ = ["item_generator", "item_seed", "seeded_items", "worker_init_fn"]


def item_seed(index: int, *, seed: int = 0) -> int:
    """A 63-bit seed derived from (seed, index) by BLAKE2b: nearby indices and
    seeds give unrelated streams, and the value is the same on every platform."""
    try:
        index, seed = operator.index(index), operator.index(seed)
    except TypeError as e:
        raise TypeError(
            f"item_seed needs integer index and seed, got index={index!r}, seed={seed!r}: "
            "pass the dataset index your __getitem__ receives"
        ) from e
    digest = hashlib.blake2b(f"samebits-item:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def item_generator(index: int, *, seed: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from (seed, index) only."""
    return torch.Generator().manual_seed(item_seed(index, seed=seed))


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy's and Python's global RNGs from the worker's torch seed
    (``base_seed + worker_id``). Use it as ``DataLoader(worker_init_fn=...)`` when
    a library reseeds them, or to make the seeding explicit. The draws stay
    reproducible for one ``num_workers`` but change with it: use
    ``item_generator`` or ``seeded_items`` for worker-count invariance."""
    s = torch.initial_seed()
    random.seed(s)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch
        return
    np.random.seed(s % 2**32)


class _SeededItems(torch.utils.data.Dataset):
    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        import numpy as np

        s = item_seed(index, seed=self.seed)
        saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        try:
            return self.dataset[index]
        finally:  # the caller's global streams continue as if nothing had drawn
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


def seeded_items(dataset: Any, *, seed: int = 0) -> torch.utils.data.Dataset:
    """Wrap a map-style dataset so that torch's, numpy's and Python's global RNGs
    are seeded from (seed, index) while its ``__getitem__(index)`` runs, and
    restored afterwards. Unchanged transforms then draw the same numbers for an
    item whatever worker, worker count or pass fetches it."""
    if not hasattr(dataset, "__getitem__") or isinstance(dataset, torch.utils.data.IterableDataset):
        raise TypeError(
            f"seeded_items needs a map-style dataset (with __getitem__), got "
            f"{type(dataset).__name__}; in an IterableDataset draw from item_generator(index)"
        )
    return _SeededItems(dataset, seed)
