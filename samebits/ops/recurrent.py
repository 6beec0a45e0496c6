"""Invariant LSTM, GRU and Elman RNN: single or stacked, bidirectional, batch_first,
padded or packed (``pack_padded_sequence``), LSTM projections (``proj_size``).

Why: on CPU ``nn.LSTM`` runs ``aten::mkldnn_rnn_layer`` (oneDNN), whose GEMMs give a
sequence different bits in a batch of 7 than alone.

How: step by step, from covered kernels only. Per layer and direction, the input
projection of every step is one ``linear`` (DOT order over the input features), and
each step adds ``linear(h, W_hh, b_hh)`` (DOT order over the hidden features); the
gate nonlinearities are samebits' sigmoid and tanh (one fixed float32 sequence per
element); the cell updates are IEEE float32 multiplies and adds in a fixed order:

    LSTM: c' = f * c + i * g;   h' = o * tanh(c')   (then h' @ W_hr.T with proj_size)
    GRU:  n = tanh(xn + r * hn);   h' = n + z * (h - n)
    RNN:  h' = tanh(xi + hh)  or  relu(xi + hh)

A row's operations depend on its own sequence only: never on the batch size, the
row's position, padding rows or the thread count. Packed batches run, at step t, the
first ``batch_sizes[t]`` rows, so a sequence's steps are the same as alone.
"""

from __future__ import annotations

import torch

from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import matmul, pointwise
from samebits.ops._common import check_float, is_exact_dtype

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _layer_params(params, kind, num_layers, ndir, has_biases):
    per = len(params) // (num_layers * ndir)
    want = 2 + 2 * bool(has_biases)
    if per not in (want, want + 1) or (per == want + 1 and kind != "lstm"):
        raise UnsupportedInputError(
            f"aten::{kind}: {len(params)} weight tensors do not split into "
            f"{num_layers} layers x {ndir} directions"
        )
    out = []
    for i in range(num_layers * ndir):
        p = list(params[i * per : (i + 1) * per])
        w_ih, w_hh = p[0], p[1]
        b_ih, b_hh = (p[2], p[3]) if has_biases else (None, None)
        w_hr = p[-1] if per == want + 1 else None
        out.append((w_ih, w_hh, b_ih, b_hh, w_hr))
    return out


def _cell(kind, xp, h, c, w_hh, b_hh, w_hr):
    """One step for the rows of xp (rows, gates*H) from state h (rows, Hout), c."""
    hh = matmul.linear(h, w_hh, b_hh)  # (rows, gates * H)
    if kind == "lstm":
        g = xp + hh
        i, f, gg, o = g.chunk(4, dim=1)
        i, f, o = pointwise.sigmoid(i), pointwise.sigmoid(f), pointwise.sigmoid(o)
        c = f * c + i * pointwise.tanh(gg)
        h = o * pointwise.tanh(c)
        if w_hr is not None:
            h = matmul.linear(h, w_hr)
        return h, c
    if kind == "gru":
        xr, xz, xn = xp.chunk(3, dim=1)
        hr, hz, hn = hh.chunk(3, dim=1)
        r = pointwise.sigmoid(xr + hr)
        z = pointwise.sigmoid(xz + hz)
        n = pointwise.tanh(xn + r * hn)
        return n + z * (h - n), None
    s = xp + hh
    return (pointwise.tanh(s) if kind == "rnn_tanh" else torch.relu(s)), None


def _run_direction(kind, xp, batch_sizes, h0, c0, w_hh, b_hh, w_hr, reverse):
    """xp: (T, B, G) projections (padded) or packed (sum(batch_sizes), G).
    Returns (outputs like xp with Hout features, h_n (B, Hout), c_n)."""
    packed = batch_sizes is not None
    T = len(batch_sizes) if packed else xp.size(0)
    sizes = batch_sizes.tolist() if packed else [xp.size(1)] * T
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    hout = h0.size(-1)
    out = xp.new_empty(offsets[-1] if packed else T * xp.size(1), hout)
    h, c = h0.clone(), None if c0 is None else c0.clone()
    h_n, c_n = h0.clone(), None if c0 is None else c0.clone()
    for t in reversed(range(T)) if reverse else range(T):
        rows = sizes[t]
        x_t = xp[offsets[t] : offsets[t] + rows] if packed else xp[t]
        if reverse and packed:
            # rows that start here (their last real step) begin from the initial state
            prev = sizes[t + 1] if t + 1 < T else 0
            if rows > prev:
                h[prev:rows] = h0[prev:rows]
                if c is not None:
                    c[prev:rows] = c0[prev:rows]
        hn, cn = _cell(kind, x_t, h[:rows], None if c is None else c[:rows], w_hh, b_hh, w_hr)
        h = torch.cat([hn, h[rows:]]) if rows < h.size(0) else hn
        if c is not None:
            c = torch.cat([cn, c[rows:]]) if rows < c.size(0) else cn
        out[offsets[t] : offsets[t] + rows] = hn
        if not reverse and packed:
            # rows whose last step is t keep this state
            nxt = sizes[t + 1] if t + 1 < T else 0
            if rows > nxt:
                h_n[nxt:rows] = hn[nxt:rows]
                if c is not None:
                    c_n[nxt:rows] = cn[nxt:rows]
    if reverse or not packed:
        h_n, c_n = h, c
    return out if packed else out.view(T, -1, hout), h_n, c_n


def rnn(
    kind,
    x,
    batch_sizes,
    hx,
    params,
    has_biases,
    num_layers,
    dropout,
    train,
    bidirectional,
    batch_first=False,
):
    """The shared body of aten::lstm / gru / rnn_tanh / rnn_relu (.input and .data)."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    op = f"aten::{kind}"
    dtype = check_float(op, x, *params)
    if train and dropout > 0 and num_layers > 1:
        raise NotInvariantError(op, x.dtype, x.shape, "dropout between layers draws random "
                                "numbers in training; call model.eval()")  # fmt: skip
    ndir = 2 if bidirectional else 1
    layers = _layer_params(params, kind, num_layers, ndir, has_biases)
    h0 = hx[0] if kind == "lstm" else hx  # (L * D, B, Hout)
    c0 = hx[1] if kind == "lstm" else None
    packed = batch_sizes is not None
    if not packed and batch_first:
        x = x.transpose(0, 1)  # (T, B, F)
    inp = x
    hs, cs = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(ndir):
            w_ih, w_hh, b_ih, b_hh, w_hr = layers[layer * ndir + d]
            xp = matmul.linear(inp, w_ih, b_ih)  # (T, B, G) or (rows, G)
            o, h_n, c_n = _run_direction(
                kind, xp, batch_sizes, h0[layer * ndir + d], None if c0 is None else c0[layer * ndir + d],
                w_hh, b_hh, w_hr, reverse=d == 1,
            )  # fmt: skip
            outs.append(o)
            hs.append(h_n)
            if c_n is not None:
                cs.append(c_n)
        inp = outs[0] if ndir == 1 else torch.cat(outs, dim=-1)
    out = inp
    if not packed and batch_first:
        out = out.transpose(0, 1)
    out = out.to(dtype)
    hy = torch.stack(hs).to(dtype)
    if kind == "lstm":
        return out, hy, torch.stack(cs).to(dtype)
    return out, hy


def lstm_input(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return rnn("lstm", x, None, hx, params, has_biases, num_layers, dropout, train,
               bidirectional, batch_first)  # fmt: skip


def lstm_data(data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional):
    return rnn("lstm", data, batch_sizes, hx, params, has_biases, num_layers, dropout, train,
               bidirectional)  # fmt: skip


def make(kind: str, packed: bool):
    """aten::<kind>.input / .data for gru, rnn_tanh and rnn_relu."""
    if packed:

        def data(data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidir):
            return rnn(kind, data, batch_sizes, hx, params, has_biases, num_layers, dropout,
                       train, bidir)  # fmt: skip

        return data

    def inp(x, hx, params, has_biases, num_layers, dropout, train, bidir, batch_first):
        return rnn(kind, x, None, hx, params, has_biases, num_layers, dropout, train, bidir,
                   batch_first)  # fmt: skip

    return inp


def _reference(module: torch.nn.Module, x, *args):
    """The module itself in float64 with the mode off: what the kernels are checked against."""
    import copy

    ref = copy.deepcopy(module).double()
    xx = x.double() if isinstance(x, torch.Tensor) else x
    return ref(xx, *args)
