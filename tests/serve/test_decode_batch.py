"""The running batch's layout (samebits/serve/_decode_batch.py): rows left-padded,
merged to the wider batch, cut to the longest row when rows leave."""

import torch

from samebits.serve._decode_batch import DecodeBatch, keep, left_mask, merge


def batch(lens: list[int], width: int, seed: int) -> DecodeBatch:
    """Rows whose real keys (random) fill their last lens[i] columns; zeros before."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(2):
        k = torch.randn(len(lens), 2, width, 4, generator=g)  # (B, H, T, D)
        v = torch.randn(len(lens), 2, width, 4, generator=g)
        for i, n in enumerate(lens):
            k[i, :, : width - n] = 0
            v[i, :, : width - n] = 0
        layers.append((k, v))
    return DecodeBatch([object() for _ in lens], layers, torch.tensor(lens))


def real(b: DecodeBatch, i: int):
    n = int(b.lens[i])
    return [(k[i, :, b.width - n :], v[i, :, b.width - n :]) for k, v in b.layers]


def same(a, b) -> bool:
    return all(
        torch.equal(x, y) for pa, pb in zip(a, b, strict=True) for x, y in zip(pa, pb, strict=True)
    )


def test_keep_cuts_to_the_longest_remaining_row():
    b = batch([3, 9, 5, 2], 9, 0)
    before = [real(b, i) for i in range(4)]
    k = keep(b, [0, 2, 3])
    assert k.width == 5 and k.lens.tolist() == [3, 5, 2]
    assert [k.rows[i] is b.rows[j] for i, j in enumerate([0, 2, 3])] == [True] * 3
    for i, j in enumerate([0, 2, 3]):
        assert same(real(k, i), before[j])
    assert keep(b, []) is None


def test_merge_pads_the_narrower_batch_on_the_left():
    a, b = batch([4, 2], 4, 1), batch([7], 7, 2)
    m = merge(a, b)
    assert m.width == 7 and m.lens.tolist() == [4, 2, 7]
    assert same(real(m, 0), real(a, 0)) and same(real(m, 1), real(a, 1))
    assert same(real(m, 2), real(b, 0))
    k = m.layers[0][0]
    assert torch.equal(k[0, :, :3], torch.zeros_like(k[0, :, :3]))  # padding: zeros, masked


def test_left_mask():
    assert left_mask(torch.tensor([2, 0, 3]), 3).tolist() == [[0, 1, 1], [0, 0, 0], [1, 1, 1]]
