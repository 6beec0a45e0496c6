import itertools

import pytest
import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import broadcast_shapes

SHAPES = [(), (1,), (3,), (2, 1), (1, 3), (2, 3), (4, 1, 3), (4, 2, 1), (1, 1, 1)]


def test_broadcast_shapes_matches_torch():
    checked = 0
    for a, b, c in itertools.product(SHAPES, repeat=3):
        try:
            want = tuple(torch.broadcast_shapes(a, b, c))
        except RuntimeError:
            with pytest.raises(UnsupportedInputError, match="aten::op: batch shapes"):
                broadcast_shapes("aten::op", a, b, c)
            continue
        assert broadcast_shapes("aten::op", a, b, c) == want
        checked += 1
    assert checked > 100
