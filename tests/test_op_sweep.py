"""No silent variance: every aten op in torch's registry that runs on CPU, takes a
floating-point tensor and is not pointwise, view, in-place, out=, backward or random
(the ops that can reduce) is covered by an invariant kernel, denied, or listed as
invariant by construction with its reason. The list comes from the registry, so a new
torch that adds such an op fails here until it is classified."""

import pytest
import torch

import samebits
from samebits import _mode

TENSORS = ("Tensor", "Tensor?", "Tensor[]", "Tensor?[]")
SKIP_TAGS = (
    torch.Tag.pointwise,
    torch.Tag.nondeterministic_seeded,
    torch.Tag.inplace_view,
    torch.Tag.view_copy,
)


def reducing_cpu_ops() -> list[str]:
    """aten ops (overload names, as the mode's tables spell them) that can reduce."""
    assert _mode.uninstall_if_idle(), "the registry must be read with the mode off"
    out = []
    for full in torch._C._dispatch_get_all_op_names():
        if not full.startswith("aten::"):
            continue
        base, _, ov = full[len("aten::") :].partition(".")
        packet = getattr(torch.ops.aten, base, None)
        op = getattr(packet, ov or "default", None) if packet is not None else None
        if op is None or "backward" in base:
            continue
        schema = op._schema
        if any(t in op.tags for t in SKIP_TAGS):
            continue
        if any(r.alias_info is not None for r in schema.returns):
            continue  # views and aliases
        if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
            continue  # out= and in-place variants: the mode handles them with their op
        if not any(str(a.type) in TENSORS for a in schema.arguments):
            continue  # factories
        if not any(str(r.type) in TENSORS for r in schema.returns):
            continue
        has = torch._C._dispatch_has_kernel_for_dispatch_key
        if not (has(full, "CPU") or has(full, "CompositeExplicitAutograd")):
            continue  # composite ops decompose into ops this list already holds
        out.append(full[len("aten::") :])
    return sorted(out)


def unclassified(ops, covered, denied, native_ok) -> list[str]:
    return [op for op in ops if op not in covered and op not in denied and op not in native_ok]


def test_the_sweep_finds_the_reducing_ops():
    ops = reducing_cpu_ops()
    assert len(ops) > 300
    for op in ("convolution", "mm", "sum.dim_IntList", "native_group_norm", "mkldnn_rnn_layer",
               "_native_multi_head_attention", "avg_pool2d", "prod"):  # fmt: skip
        assert op in ops
    for op in ("add.Tensor", "exp", "view", "sum.IntList_out", "convolution_backward"):
        assert op not in ops


def test_every_reducing_op_is_covered_denied_or_invariant_by_construction():
    covered = {**_mode._COVERED, **_mode._GUARDED}
    missing = unclassified(reducing_cpu_ops(), covered, _mode._DENIED, _mode._NATIVE_OK)
    assert not missing, (
        f"classify these ops in samebits/_mode.py or samebits/_native_ok.py: {missing}"
    )


def test_the_sweep_would_have_caught_the_silent_lstm():
    """Before issue 16, nn.LSTM ran aten::mkldnn_rnn_layer, neither covered nor denied."""
    covered = {k: v for k, v in _mode._COVERED.items() if not k.startswith(("lstm", "gru", "rnn"))}
    denied = {k: v for k, v in _mode._DENIED.items() if k != "mkldnn_rnn_layer"}
    assert "mkldnn_rnn_layer" in unclassified(reducing_cpu_ops(), covered, denied, _mode._NATIVE_OK)


def test_every_table_entry_names_an_existing_op_and_has_a_reason():
    for name in [*_mode._COVERED, *_mode._DENIED, *_mode._NATIVE_OK, *_mode._GUARDED]:
        assert _mode._op_exists(name), name
    assert all(why.strip() for why in [*_mode._DENIED.values(), *_mode._NATIVE_OK.values()])
    tables = [_mode._COVERED, _mode._DENIED, _mode._NATIVE_OK, _mode._GUARDED]
    assert sum(len(t) for t in tables) == len(set().union(*tables))  # each op in one table
    table = samebits.covered_ops()
    assert table["aten::mkldnn_rnn_layer"].startswith("denied")
    assert table["aten::lstm.input"] == "invariant kernel"
    assert table["aten::gather"].startswith("native (invariant by construction)")


def test_accumulating_index_put_is_denied_and_plain_index_put_runs():
    x = torch.zeros(5)
    idx = torch.tensor([1, 1, 3])
    with samebits.batch_invariant():
        y = x.index_put((idx,), torch.ones(3))  # a copy: native
        x[idx] = 2.0
        with pytest.raises(samebits.NotInvariantError, match="accumulate"):
            x.index_put_((idx,), torch.ones(3), accumulate=True)
    assert y.tolist() == [0, 1, 0, 1, 0] and x.tolist() == [0, 2, 0, 2, 0]
    assert samebits.covered_ops()["aten::index_put"].startswith("native, denied when")
