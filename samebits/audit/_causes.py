"""The causes a loader audit can establish by experiment, each with its fix as code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    key: str
    text: str
    evidence: str  # the experiment that established it
    fix: str


WORKER_RNG = Cause(
    "worker_rng",
    "random transform drawn from the worker's RNG stream: item values depend on the worker",
    "each worker count is reproducible, but the items change with torch's seed, so they are "
    "random draws; DataLoader seeds worker k with base_seed + k, and the draw an item gets "
    "depends on which worker fetched it and what that worker drew before",
    """\
# draw an item's randomness from (seed, index), not from the worker's stream
def __getitem__(self, index):
    g = samebits.data.item_generator(index, seed=self.seed)
    x = self.x[index]
    return x + 0.1 * torch.randn(x.shape, generator=g)   # was: torch.randn(x.shape)

# or, for transforms you cannot change (torch.rand, np.random, random):
dataset = samebits.data.seeded_items(dataset, seed=0)""",
)

GLOBAL_RNG = Cause(
    "global_rng",
    "numpy / Python global RNG not seeded",
    "two passes with numpy's and Python's global RNGs seeded as well as torch's gave "
    "identical batches; torch.manual_seed does not reach them in the main process",
    """\
# seed per item (any worker count, any order):
rng = np.random.default_rng(samebits.data.item_seed(index, seed=self.seed))
# or seed the global RNGs before each pass, as torch's is:
torch.manual_seed(seed); np.random.seed(seed); random.seed(seed)   # or samebits.deterministic(seed)
loader = DataLoader(..., worker_init_fn=samebits.data.worker_init_fn)""",
)

DUPLICATES = Cause(
    "duplicates",
    "duplicate items: IterableDataset not sharded across workers",
    "with more workers the same item bytes occur more often in one pass: every worker "
    "runs the whole __iter__",
    """\
# shard whole batches across workers: worker k yields batches k, k + n, k + 2n, ...
# (whole batches keep the order of num_workers=0, since the loader takes them round robin)
def __iter__(self):
    info = torch.utils.data.get_worker_info()
    k, n = (info.id, info.num_workers) if info else (0, 1)
    for b in range(k, math.ceil(len(self.items) / self.batch_size), n):
        yield from self.items[b * self.batch_size : (b + 1) * self.batch_size]""",
)

ORDER = Cause(
    "order",
    "same items, different order",
    "both passes hold exactly the same items (bit for bit), in a different order: "
    "batches are taken as workers finish them",
    """\
loader = DataLoader(..., num_workers=n, in_order=True)   # the default; in_order=False trades order for speed
# and a shuffle draws from torch's seed, or from an explicit generator:
loader = DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(seed))""",
)

STATE = Cause(
    "state",
    "state carried across passes",
    "the dataset's attributes changed during a pass, and restoring them before the next "
    "pass gave identical batches",
    """\
# make __getitem__ a function of index: no counters, caches of transformed values or
# in-place edits of self (they carry into the next pass in the main process)
def __getitem__(self, index):
    g = samebits.data.item_generator(index, seed=self.seed)   # was: self.calls += 1
    return self.x[index] * (1 + 0.1 * torch.rand((), generator=g))""",
)

WORKER_STATE = Cause(
    "worker_state",
    "item values depend on the worker process, not on torch's seed",
    "from the same dataset state, the items do not change with torch's seed: "
    "something per worker (get_worker_info(), per-process state) shapes the values",
    """\
# compute an item from its index (and an item_generator) alone, never from
# torch.utils.data.get_worker_info() or state a worker builds up""",
)

UNEXPLAINED = Cause(
    "unexplained",
    "not explained by order, dataset state or unseeded global RNGs",
    "seeding torch, numpy and Python and restoring the dataset's attributes did not make "
    "two passes agree: look for threads racing in the dataset, reads of changing files, "
    "or another library's RNG",
    """\
# take randomness from samebits.data.item_generator(index), keep shared state out of
# __getitem__, and give thread pools inside the dataset a fixed order""",
)
