"""samebits.dask on a real distributed.LocalCluster with worker processes."""

import numpy as np
import pytest
import torch

da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
distributed = pytest.importorskip("distributed")

from samebits.dask import exact_mean, exact_sum, predict  # noqa: E402
from samebits.exact import exact_mean as np_exact_mean  # noqa: E402
from samebits.exact import exact_sum as np_exact_sum  # noqa: E402


@pytest.fixture(scope="module", params=[1, 2], ids=lambda n: f"{n}workers")
def client(request):
    cluster = distributed.LocalCluster(
        n_workers=request.param,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((601, 5)) * np.logspace(-150, 150, 5)


@pytest.mark.parametrize(
    "chunks,split_every", [((601, 5), None), ((100, 5), 2), ((37, 2), 4), ((7, 1), 3)]
)
def test_exact_sum_ignores_chunks_and_split_every(client, chunks, split_every):
    x = data()
    a = da.from_array(x, chunks=chunks)
    assert (
        exact_sum(a, axis=0, split_every=split_every).compute().tobytes()
        == np_exact_sum(x, 0).tobytes()
    )
    assert (
        np.asarray(exact_sum(a, split_every=split_every).compute()).tobytes()
        == np.asarray(np_exact_sum(x)).tobytes()
    )
    assert (
        exact_mean(a, axis=1, split_every=split_every).compute().tobytes()
        == np_exact_mean(x, 1).tobytes()
    )
    f32 = np.stack([x[:, 2], x[:, 2] * 1e30], 1).astype(np.float32)  # within float32 range
    assert (
        exact_sum(da.from_array(f32, chunks=(50, 1)), axis=0).compute().tobytes()
        == np_exact_sum(f32, 0).tobytes()
    )


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 8)
    ).eval()


def reference(rows: np.ndarray) -> np.ndarray:
    """Single-process prediction, one row at a time, under the mode."""
    import samebits

    m = mlp()
    with torch.inference_mode(), samebits.batch_invariant():
        return np.stack([m(torch.from_numpy(r[None]))[0].numpy() for r in rows])


@pytest.mark.parametrize("nparts,batch_size", [(1, 32), (3, 5), (7, 1)])
def test_predict_array_and_bag_match_single_process(client, nparts, batch_size):
    rows = np.random.default_rng(1).standard_normal((40, 64)).astype(np.float32)
    ref = reference(rows)
    arr = da.from_array(rows, chunks=(-(-40 // nparts), 64))
    got = predict(mlp(), arr, batch_size=batch_size).compute()
    assert got.tobytes() == ref.tobytes()
    bag = db.from_sequence(list(rows), npartitions=nparts)
    got_bag = np.stack(predict(mlp(), bag, batch_size=batch_size).compute())
    assert got_bag.tobytes() == ref.tobytes()


def test_predict_dataframe(client):
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    rows = np.random.default_rng(2).standard_normal((30, 64)).astype(np.float32)
    df = dd.from_pandas(pd.DataFrame(rows), npartitions=4)
    assert predict(mlp(), df, batch_size=8).compute().tobytes() == reference(rows).tobytes()


def test_bad_collection():
    from samebits.errors import UnsupportedInputError

    with pytest.raises(UnsupportedInputError, match="expected a dask bag, array or DataFrame"):
        predict(mlp(), [1, 2, 3])
    with pytest.raises(UnsupportedInputError, match="complex"):
        exact_sum(da.from_array(np.array([1 + 1j])))
