import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import samebits
from samebits import _native
from samebits.ops import recurrent
from tests.conftest import TOL, same_bits

FEAT, HID, T = 6, 8, 9
LENGTHS = [9, 3, 7, 1, 9, 5, 2]
MODELS = {
    "lstm": lambda: nn.LSTM(FEAT, HID),
    "lstm_stacked_bidir": lambda: nn.LSTM(FEAT, HID, num_layers=2, bidirectional=True),
    "lstm_proj": lambda: nn.LSTM(FEAT, HID, proj_size=3, num_layers=2),
    "gru_stacked_bidir": lambda: nn.GRU(FEAT, HID, num_layers=2, bidirectional=True),
    "gru_nobias": lambda: nn.GRU(FEAT, HID, bias=False),
    "rnn_tanh": lambda: nn.RNN(FEAT, HID),
    "rnn_relu_bidir": lambda: nn.RNN(FEAT, HID, nonlinearity="relu", bidirectional=True),
}


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def make(name, dtype, batch_first):
    torch.manual_seed(0)
    m = MODELS[name]()
    m.batch_first = batch_first
    return m.eval().to(dtype)


def states(res):
    h = res[1]
    return h if isinstance(h, tuple) else (h,)


def run_packed(m, seqs, batch_first):
    """Pad the sequences, pack them (unsorted), run; per sequence (outputs, states)."""
    lens = torch.tensor([s.size(0) for s in seqs])
    x = nn.utils.rnn.pad_sequence(seqs, batch_first=batch_first)
    res = m(pack_padded_sequence(x, lens, batch_first=batch_first, enforce_sorted=False))
    out, _ = pad_packed_sequence(res[0], batch_first=batch_first)
    per = []
    for i, n in enumerate(lens.tolist()):
        o = out[i, :n] if batch_first else out[:n, i]
        per.append((o, tuple(s[:, i] for s in states(res))))
    return per


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_packed_sequences_invariant_to_batch_position_threads(name, dtype, batch_first, threads):
    m = make(name, dtype, batch_first)
    seqs = [rnd(n, FEAT, dtype=dtype, seed=10 + i) for i, n in enumerate(LENGTHS)]
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [run_packed(m, [s], batch_first)[0] for s in seqs]
        for nthreads, order in ((2, [6, 0, 3, 1, 5, 2, 4]), (3, [2, 5]), (5, [4, 1, 0])):
            threads(nthreads)
            res = run_packed(m, [seqs[i] for i in order], batch_first)
            assert _native.last_kernel_threads() == nthreads
            for (o, st), i in zip(res, order, strict=True):
                assert same_bits(o, alone[i][0]), (name, i, nthreads)
                for a, b in zip(st, alone[i][1], strict=True):
                    assert same_bits(a, b), (name, i, nthreads, "state")


@pytest.mark.parametrize("name", ["lstm", "gru_nobias", "rnn_tanh", "lstm_proj"])
def test_right_padded_unidirectional_outputs_match_alone(name, threads):
    m = make(name, torch.float32, True)
    x = rnd(5, T, FEAT, seed=3)
    with samebits.batch_invariant(), torch.no_grad():
        threads(2)
        full = m(x)[0]
        threads(1)
        for i, n in enumerate([9, 4, 6, 1, 9]):
            assert same_bits(m(x[i : i + 1, :n])[0][0], full[i, :n])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recurrent_matches_float64_reference(name):
    m = make(name, torch.float32, False)
    x = rnd(T, 4, FEAT, seed=4)
    with samebits.batch_invariant(), torch.no_grad():
        out = m(x)
    with torch.no_grad():
        ref = recurrent._reference(m, x)
    torch.testing.assert_close(out[0], ref[0].float(), **TOL[torch.float32])
    for a, b in zip(states(out), states(ref), strict=True):
        torch.testing.assert_close(a, b.float(), **TOL[torch.float32])


def test_initial_state_is_used():
    m = make("lstm_stacked_bidir", torch.float32, False)
    x = rnd(T, 3, FEAT, seed=5)
    hx = (rnd(4, 3, HID, seed=6), rnd(4, 3, HID, seed=7))
    with samebits.batch_invariant(), torch.no_grad():
        out = m(x, hx)
    with torch.no_grad():
        ref = recurrent._reference(m, x, tuple(h.double() for h in hx))
    torch.testing.assert_close(out[0], ref[0].float(), **TOL[torch.float32])


def test_native_lstm_is_batch_variant():
    """Why: oneDNN's LSTM gives a sequence other bits in a batch than alone."""
    torch.manual_seed(0)
    m = nn.LSTM(64, 64).eval()
    x = rnd(12, 7, 64, seed=8)
    with torch.no_grad():
        full = m(x)[0]
        assert any(not same_bits(m(x[:, i : i + 1])[0], full[:, i : i + 1]) for i in range(7))


def test_training_dropout_between_layers_is_denied():
    m = nn.LSTM(FEAT, HID, num_layers=2, dropout=0.5).train()
    with samebits.batch_invariant(), pytest.raises(samebits.NotInvariantError, match="eval"):
        m(rnd(T, 2, FEAT))
