"""Real processes on gloo at world sizes 1 to 4 (torch.multiprocessing spawn)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from samebits.exact import exact_sum


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(0)
    big = (
        torch.randn(37, 5, generator=g, dtype=torch.float64)
        * torch.logspace(-200, 200, 37, dtype=torch.float64)[:, None]
    )
    return big, torch.randn(64, 3, generator=g).float()


def _worker(rank, world, port, out_dir, mismatched):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from samebits.distributed import all_reduce_exact, exact_sum_distributed

        big, small = _data()
        # sharded along dim 0 unevenly: rank r takes rows r, r+world, ... (order changes too)
        res64 = exact_sum_distributed(big[rank::world], dim=0)
        res32 = exact_sum_distributed(small[rank::world], dim=0)
        # all-reduce: each rank holds one slice of a (world x 5) matrix of values
        vals = torch.stack([big[i] for i in range(37)])[:8]
        ar = vals[rank].clone()  # this rank's values
        all_reduce_exact(ar)
        torch.save(
            {"res64": res64, "res32": res32, "ar": ar}, os.path.join(out_dir, f"{world}-{rank}.pt")
        )
        if mismatched:
            from samebits.errors import UnsupportedInputError

            try:
                all_reduce_exact(torch.ones(3 + (rank == 1), dtype=torch.float32))
            except UnsupportedInputError as e:
                torch.save(str(e), os.path.join(out_dir, f"err-{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_world_sizes_give_identical_bits(world, tmp_path):
    mp.spawn(_worker, args=(world, _port(), str(tmp_path), False), nprocs=world, join=True)
    big, small = _data()
    ref64, ref32 = exact_sum(big, 0), exact_sum(small, 0)
    vals = torch.stack([big[i] for i in range(37)])[:8]
    ref_ar = exact_sum(vals[:world], 0)
    for rank in range(world):
        got = torch.load(tmp_path / f"{world}-{rank}.pt")
        assert got["res64"].numpy().tobytes() == ref64.numpy().tobytes()
        assert got["res32"].numpy().tobytes() == ref32.numpy().tobytes()
        assert got["ar"].numpy().tobytes() == ref_ar.numpy().tobytes()


def test_mismatched_shapes_fail_on_every_rank(tmp_path):
    mp.spawn(_worker, args=(2, _port(), str(tmp_path), True), nprocs=2, join=True)
    for rank in range(2):
        msg = torch.load(tmp_path / f"err-{rank}.pt")
        assert (
            "ranks disagree" in msg and "rank 0: shape (3,)" in msg and "rank 1: shape (4,)" in msg
        )
