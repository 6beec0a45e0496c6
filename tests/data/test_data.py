"""samebits.data: per-item randomness that does not depend on the worker."""

import random

import numpy as np
import pytest
import torch

import samebits.data


def test_item_generator_depends_on_seed_and_index_only():
    a = torch.rand(5, generator=samebits.data.item_generator(3, seed=1))
    torch.manual_seed(123)
    torch.rand(7)  # global draws in between change nothing
    b = torch.rand(5, generator=samebits.data.item_generator(3, seed=1))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(5, generator=samebits.data.item_generator(4, seed=1)))
    assert not torch.equal(a, torch.rand(5, generator=samebits.data.item_generator(3, seed=2)))
    assert samebits.data.item_seed(np.int64(3), seed=1) == samebits.data.item_seed(3, seed=1)
    assert 0 <= samebits.data.item_seed(-1) < 2**63


def test_item_seed_rejects_non_integers():
    with pytest.raises(TypeError, match="integer index and seed"):
        samebits.data.item_seed(1.5)


def test_seeded_items_seeds_globals_per_item_and_restores_them():
    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(2), np.random.rand(), random.random()

    ds = samebits.data.seeded_items(Draws(), seed=5)
    torch.manual_seed(0)
    first = ds[2]
    after = torch.rand(1)
    torch.manual_seed(0)
    ds[1]
    second = ds[2]
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))  # the caller's stream did not move
    assert len(ds) == 4
    with pytest.raises(TypeError, match="map-style dataset"):
        samebits.data.seeded_items(object())


def test_worker_init_fn_seeds_numpy_and_python_from_torch():
    torch.manual_seed(11)
    samebits.data.worker_init_fn(0)
    a = (np.random.rand(), random.random())
    torch.manual_seed(11)
    samebits.data.worker_init_fn(0)
    assert a == (np.random.rand(), random.random())
