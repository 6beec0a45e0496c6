"""Small data pipelines with the classic faults, and each with its documented fix.

Every factory takes ``num_workers`` and returns a fresh DataLoader, as
``samebits.audit_loader`` and ``samebits audit --loader`` expect. Items are tiny
so real worker processes start and finish fast.
"""

import math
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

import samebits.data

N, D, BS = 12, 3, 4


def base() -> torch.Tensor:
    return torch.arange(N * D, dtype=torch.float32).reshape(N, D)


# -- random transform drawn from the worker's RNG stream ----------------------------
class Noisy(Dataset):
    def __init__(self, fixed=False):
        self.x, self.fixed = base(), fixed

    def __len__(self):
        return N

    def __getitem__(self, i):
        g = samebits.data.item_generator(i, seed=7) if self.fixed else None
        return {"x": self.x[i] + torch.randn(D, generator=g), "index": i}


def worker_rng(num_workers):
    return DataLoader(Noisy(), batch_size=BS, num_workers=num_workers)


def worker_rng_fixed(num_workers):
    return DataLoader(Noisy(fixed=True), batch_size=BS, num_workers=num_workers)


class NoisyUnchanged(Dataset):
    """A transform that calls torch.rand itself: cannot be changed, only wrapped."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        return base()[i] * torch.rand(D)


def worker_rng_wrapped(num_workers):
    ds = samebits.data.seeded_items(NoisyUnchanged(), seed=3)
    return DataLoader(ds, batch_size=BS, num_workers=num_workers)


# -- numpy's global RNG in the main process -------------------------------------------
class NumpyJitter(Dataset):
    def __init__(self, per_item=False):
        self.x, self.per_item = base().numpy(), per_item

    def __len__(self):
        return N

    def __getitem__(self, i):
        if self.per_item:
            rng = np.random.default_rng(samebits.data.item_seed(i, seed=1))
            return self.x[i] + rng.standard_normal(D).astype(np.float32)
        return self.x[i] + np.random.standard_normal(D).astype(np.float32)


def numpy_global(num_workers):
    return DataLoader(NumpyJitter(), batch_size=BS, num_workers=num_workers)


def numpy_seeded(num_workers):
    """The seeding fix: seed numpy and Python as torch is seeded, for every pass."""
    np.random.seed(0)
    random.seed(0)
    return DataLoader(
        NumpyJitter(),
        batch_size=BS,
        num_workers=num_workers,
        worker_init_fn=samebits.data.worker_init_fn,
    )


def numpy_per_item(num_workers):
    return DataLoader(NumpyJitter(per_item=True), batch_size=BS, num_workers=num_workers)


# -- IterableDataset not sharded across workers -----------------------------------------
class Stream(IterableDataset):
    def __init__(self, sharded=False):
        self.x, self.sharded = base(), sharded

    def __iter__(self):
        info = get_worker_info()
        k, n = (info.id, info.num_workers) if info and self.sharded else (0, 1)
        # whole batches per worker, so the order is that of num_workers=0
        for b in range(k, math.ceil(N / BS), n):
            yield from self.x[b * BS : (b + 1) * BS]


def unsharded(num_workers):
    return DataLoader(Stream(), batch_size=BS, num_workers=num_workers)


def sharded(num_workers):
    return DataLoader(Stream(sharded=True), batch_size=BS, num_workers=num_workers)


# -- in_order=False ---------------------------------------------------------------------
class SlowFirst(Dataset):
    """Item 0 takes long, so the batch holding it arrives last from its worker."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        if i == 0 and get_worker_info() is not None:
            time.sleep(0.3)
        return base()[i]


def out_of_order(num_workers):
    kw = {"in_order": False} if num_workers else {}
    return DataLoader(SlowFirst(), batch_size=BS, num_workers=num_workers, **kw)


def in_order(num_workers):
    return DataLoader(SlowFirst(), batch_size=BS, num_workers=num_workers, in_order=True)


# -- state mutated in __getitem__ -------------------------------------------------------
class Counting(Dataset):
    def __init__(self, fixed=False):
        self.x, self.calls, self.fixed = base(), 0, fixed

    def __len__(self):
        return N

    def __getitem__(self, i):
        if self.fixed:
            g = samebits.data.item_generator(i)
            return self.x[i] * (1 + 0.1 * torch.rand((), generator=g))
        self.calls += 1
        return self.x[i] * (1 + 0.1 * self.calls)


def stateful_factory(fixed=False):
    ds = Counting(fixed)  # one dataset, a fresh loader per pass: the usual epoch loop

    def make_loader(num_workers):
        return DataLoader(ds, batch_size=BS, num_workers=num_workers)

    return make_loader


# -- a clean pipeline ------------------------------------------------------------------
def clean(num_workers):
    ds = torch.utils.data.TensorDataset(base(), torch.arange(N))
    return DataLoader(ds, batch_size=BS, shuffle=True, num_workers=num_workers)


def wrong_workers(num_workers):
    return DataLoader(Noisy(), batch_size=BS, num_workers=0)
