"""The registry sweep: every op the dispatcher knows, in every namespace, after importing
torch, transformers and sentence-transformers (and torchvision and torchaudio where they
are installed), is classified by samebits/_policy.py: covered, guarded, native, denied,
or a composite. An op no rule or table names is "refused" (it raises under the mode),
and this sweep fails on it: a new torch version's new op fails here until someone
classifies it, while under the mode it already raises."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import samebits
from samebits import _mode, _policy
from samebits.errors import NotInvariantError

OPTIONAL = ("torchvision", "torchaudio")


# a torch source file that registers ops: a custom_op, a Library that defines, lib.define
_REGISTERS = re.compile(
    r"custom_op\(\s*[\"'][\w.]+::|Library\(\s*[\"']\w+[\"']\s*,\s*[\"'](?:DEF|FRAGMENT)[\"']"
    r"|\blib\.define\("
)


def _import_torchs_op_modules() -> list[str]:
    """Import every module of the installed torch whose source registers ops, so the
    sweep sees their namespaces whatever the test session imported before (such
    namespaces, e.g. quantized_decomposed or cplib, otherwise appear only once some
    other code imports their module). A rule over the sources, not a list: a module a
    new torch adds is swept too."""
    root = Path(torch.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if "testing" in rel.parts or path.name.startswith("test"):
            continue
        if _REGISTERS.search(path.read_text(errors="replace")):
            names.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception:  # noqa: BLE001 - optional backends (e.g. CUDA-only) may not import
            pass
    return imported


def _import_the_libraries() -> list[str]:
    import sentence_transformers  # noqa: F401
    import transformers  # noqa: F401

    assert len(_import_torchs_op_modules()) > 10

    present = []
    for name in OPTIONAL:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            present.append(name)
    return present


def test_every_op_of_every_namespace_is_classified():
    _import_the_libraries()
    ops = _policy.all_ops()
    namespaces = {q.partition("::")[0] for q in ops}
    assert {"aten", "quantized", "prims"} <= namespaces and len(ops) > 3000
    unclassified = [q for q in ops if _policy.classify(q)[0] == "refused"]
    assert not unclassified, (
        f"classify these ops in samebits/_policy.py or samebits/_native_ok.py: {unclassified}"
    )


def test_the_classification_of_known_ops():
    assert _policy.classify("aten::mm")[0] == "covered"
    assert _policy.classify("aten::mm.out")[0] == "covered"  # its family's
    assert _policy.classify("aten::exp_")[0] == "covered"
    assert _policy.classify("aten::add.Tensor")[0] == "covered"  # alpha != 1: the engine
    assert _policy.classify("aten::mul.Tensor")[0] == "covered"  # bf16 x scalar: the engine
    assert _policy.classify("aten::view")[0] == "native"  # a view, by its schema
    assert _policy.classify("aten::reciprocal.out")[0] == "native"  # one IEEE operation
    assert _policy.classify("aten::sqrt.out")[0] == "covered"  # torch's is not correctly rounded
    assert _policy.classify("aten::cat")[0] == "native"
    assert _policy.classify("aten::prod")[0] == "denied"
    assert _policy.classify("aten::special_bessel_j0.out")[0] == "denied"  # no formula
    assert _policy.classify("aten::layer_norm")[0] == "composite"
    assert _policy.classify("quantized::linear_dynamic")[0] == "denied"
    assert _policy.classify("aten::quantize_per_tensor_dynamic")[0] == "denied"


def test_an_op_taken_out_of_the_tables_falls_to_refused(monkeypatch):
    """A rule never lets an unlisted reducing op through: without its table entry,
    prod (a CPU kernel, no rule) is refused, not native."""
    monkeypatch.delitem(_policy._DENIED, "prod")
    _policy.classify.cache_clear()
    try:
        assert _policy.classify("aten::prod")[0] == "refused"
    finally:
        monkeypatch.undo()
        _policy.classify.cache_clear()


def test_a_new_library_op_is_refused_under_the_mode_and_integers_pass():
    """An op a library registers after the mode was first entered reaches the mode key's
    fallback: refused with floats, torch's kernel with integers."""
    with samebits.batch_invariant():
        pass  # the mode key's registrations exist before the library does
    lib = torch.library.Library("samebits_sweep_test", "DEF")
    lib.define("scaled_sum(Tensor x) -> Tensor")
    lib.impl("scaled_sum", lambda x: (x * 3).sum(-1, keepdim=True), "CPU")
    try:
        op = torch.ops.samebits_sweep_test.scaled_sum
        x = torch.arange(12).reshape(3, 4)
        assert _policy.classify("samebits_sweep_test::scaled_sum")[0] == "refused"
        with samebits.batch_invariant():
            assert op(x).tolist() == [[18], [66], [114]]  # integers: exact, native
            with pytest.raises(NotInvariantError, match="samebits_sweep_test::scaled_sum"):
                op(x.float())
        assert op(x.float()).tolist() == [[18.0], [66.0], [114.0]]  # outside: untouched
    finally:
        lib._destroy()


# Table entries that only some torch of the range has: op -> (first torch with it, first
# torch without it); None: no bound
VERSIONED = {
    "cholesky": (None, (2, 14)),
    "linalg_matrix_sqrth": ((2, 14), None),
    "linalg_polar": ((2, 14), None),
    "_philox_key_fold_in.Tensor": ((2, 14), None),
    "_philox_randint_": ((2, 15), None),
    "_scaled_addmm": ((2, 15), None),
}


def test_every_table_entry_names_an_existing_op_and_has_a_reason():
    tables = [_policy._COVERED, _policy._DENIED, _policy.NATIVE_OK, _policy._GUARDED]
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    for name in [n for t in tables for n in t]:
        if not _policy.op_exists(name):
            added, removed = VERSIONED.get(name, (None, None))
            assert (added and version < added) or (removed and version >= removed), name
    assert all(why.strip() for why in [*_policy._DENIED.values(), *_policy.NATIVE_OK.values()])
    assert sum(len(t) for t in tables) == len(set().union(*tables))  # each op in one table
    table = samebits.covered_ops()
    assert table["aten::mkldnn_rnn_layer"].startswith("denied")
    assert table["aten::lstm.input"] == "invariant kernel"
    assert table["aten::gather"].startswith("native (invariant by construction)")
    assert table["quantized::linear_dynamic"].startswith("denied")
    assert list(table) == sorted(table)


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


def test_registrations_cover_every_classified_op_with_a_kernel():
    """Each covered, guarded or native op with a CPU kernel has its registration on the
    mode key: no such op reaches the fallback (which would refuse it). A denied op needs
    one only where it has a composite kernel, which would otherwise run on the key; with
    only a backend kernel it reaches the fallback, which refuses it. The plan of the
    registry as it is now (ops a library registers after the first entry reach the
    fallback, which classifies them then)."""
    planned = {q for q, *_ in _mode._plan_spec()}
    backends = _policy.registered("CPU", "QuantizedCPU")
    explicits = _policy.registered(
        "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional"
    )
    missing = []
    for q in _policy.all_ops():
        kind = _policy.classify(q)[0]
        needs = kind in ("covered", "guarded", "native") and q in backends
        if (needs or (kind == "denied" and q in explicits)) and q not in planned:
            missing.append(q)
    assert not missing, missing


def test_a_denied_op_with_only_a_backend_kernel_is_refused_by_the_fallback_with_its_reason():
    q = "aten::_logcumsumexp"
    assert q in _policy.registered("CPU") and q not in {p for p, *_ in _mode._plan_spec()}
    kind, why = _policy.classify(q)
    assert kind == "denied"
    with samebits.batch_invariant():
        with pytest.raises(samebits.NotInvariantError, match=f"_logcumsumexp.*{why}"):
            torch.ops.aten._logcumsumexp(torch.randn(6), 0)


def test_the_plan_cache_holds_the_computed_plan(tmp_path, monkeypatch):
    """The first entry's plan is read from $SAMEBITS_CACHE when a process with the same
    sources and registry wrote it: what is read is what would be computed, and a new
    op in the registry gives a new cache key (so a stale plan is never read)."""
    monkeypatch.setenv("SAMEBITS_CACHE", str(tmp_path))
    computed = _mode._plan_spec()
    written = _mode._cached_plan()[0]  # computes and writes
    files = list(tmp_path.glob("plan-*.json"))
    assert len(files) == 1 and written == computed
    assert _mode._cached_plan()[0] == computed  # read back
    key = _mode._plan_cache_key()
    lib = torch.library.Library("samebits_plan_test", "DEF")
    lib.define("twice(Tensor x) -> Tensor")
    try:
        assert _mode._plan_cache_key() != key
    finally:
        lib._destroy()
