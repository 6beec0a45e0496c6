import threading
import warnings

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits import _mode, _policy
from samebits.errors import NotInvariantError

x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def restored_after_exit() -> bool:
    """Out of the mode, with torch's kernels back: leaving keeps samebits' kernels
    registered for the uninstall delay; uninstall_if_idle() restores them now."""
    return not samebits.is_batch_invariant() and _mode.uninstall_if_idle() and not _mode.installed()


def table(op: str) -> str:
    """An op's registrations, but those on the mode key (which stay once made: no thread
    outside the mode reaches them)."""
    dump = torch._C._dispatch_dump(op).splitlines()
    return "\n".join(line for line in dump if not line.startswith(_mode.KEY_NAME + ":"))


def test_enter_exit_restores_exactly_what_was_registered():
    assert restored_after_exit()  # (an earlier test's exit may still be within the delay)
    ops = ("aten::mm", "aten::linear", "aten::sum.dim_IntList", "aten::logcumsumexp")
    before = {op: table(op) for op in ops}
    with samebits.batch_invariant():
        assert samebits.is_batch_invariant() and _mode.installed()
        assert table("aten::linear") != before["aten::linear"]  # the autograd layer
        assert torch._C._dispatch_tls_is_dispatch_key_included(_mode._KEY)
    assert not torch._C._dispatch_tls_is_dispatch_key_included(_mode._KEY)
    assert restored_after_exit()
    assert {op: table(op) for op in before} == before


def test_the_mode_key_is_this_threads_alone():
    """Only a thread inside the mode has the key; its kernels are where the mode lives."""
    seen = {}

    def other():
        seen["other"] = torch._C._dispatch_tls_is_dispatch_key_included(_mode._KEY)

    with samebits.batch_invariant():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert torch._C._dispatch_tls_is_dispatch_key_included(_mode._KEY)
        dump = torch._C._dispatch_dump("aten::mm")
        assert f"{_mode.KEY_NAME}: registered at" in dump and "samebits" in dump
    assert seen == {"other": False}


def test_nesting_and_reentry_keep_depth():
    outer = samebits.batch_invariant()
    with outer:
        with outer:  # the same object re-entered
            with samebits.batch_invariant(False):
                assert not samebits.is_batch_invariant()
                assert _mode.installed()  # still held by the outer frames
            assert samebits.is_batch_invariant()
        assert samebits.is_batch_invariant() and _mode.installed()
    assert restored_after_exit()


def test_exception_exit_restores():
    assert restored_after_exit()
    before = table("aten::mm")
    with pytest.raises(RuntimeError, match="boom"):
        with samebits.batch_invariant():
            with samebits.batch_invariant():
                raise RuntimeError("boom")
    assert restored_after_exit()
    assert table("aten::mm") == before


def test_decorator():
    @samebits.batch_invariant()
    def f():
        return samebits.is_batch_invariant()

    assert f() is True and f() is True
    assert not samebits.is_batch_invariant()


def test_other_threads_keep_native_kernels_and_do_not_inherit(monkeypatch):
    """The mode is per thread: a thread that did not enter it runs native kernels,
    even while another thread holds the mode."""
    entered, release = threading.Event(), threading.Event()
    seen = {}
    a, w = torch.randn(64, 384), torch.randn(1536, 384)
    native = F.linear(a[:1], w)  # before anything is installed
    calls = []
    original = _policy._COVERED["linear"]

    def spy(*args, **kwargs):  # samebits' linear, noting the thread that reached it
        calls.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setitem(_policy._COVERED, "linear", spy)

    def holder():
        with samebits.batch_invariant():
            seen["holder"] = samebits.is_batch_invariant()
            entered.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(10)
    try:
        assert _mode.installed()
        assert not samebits.is_batch_invariant()
        # native behaviour here: a denied op still works, float64 mm still works
        torch.logcumsumexp(x, -1)
        torch.ones(2, 2, dtype=torch.float64) @ torch.ones(2, 2, dtype=torch.float64)
        assert torch.equal(F.linear(a[:1], w), native)
        assert calls == []  # samebits' kernel was installed but not reached from here
    finally:
        release.set()
        t.join()
    assert seen["holder"] is True and restored_after_exit()


def test_two_threads_in_the_mode_get_identical_bits():
    a, w = torch.randn(33, 384), torch.randn(200, 384)
    with samebits.batch_invariant():
        ref = F.linear(a, w)
    results, errors = [], []

    def worker():
        try:
            with samebits.batch_invariant():
                for m in (1, 5, 33):
                    results.append(torch.equal(F.linear(a[:m], w), ref[:m]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(results) == 12 and all(results)
    assert restored_after_exit()


def test_uncovered_reduction_raises_naming_op_dtype_shape():
    with samebits.batch_invariant():
        with pytest.raises(
            NotInvariantError,
            match=r"aten::logcumsumexp \(dtype=torch.float32, shape=\(3, 4, 8, 8\)\)",
        ):
            torch.logcumsumexp(x, -1)
        with pytest.raises(NotInvariantError, match=r"aten::prod"):
            x.prod()
        with pytest.raises(NotInvariantError, match="trace"):
            torch.trace(x[0, 0])
        assert torch.arange(1, 5).prod().item() == 24  # integer products are exact


def test_warn_policy_warns_and_runs_native():
    with samebits.batch_invariant(on_unsupported="warn"):
        with pytest.warns(samebits.NotInvariantWarning, match="aten::logcumsumexp"):
            out = torch.logcumsumexp(x, -1)
    assert torch.equal(out, torch.logcumsumexp(x, -1))


def test_bad_policy():
    with pytest.raises(ValueError, match="on_unsupported='ignore'"):
        samebits.batch_invariant(on_unsupported="ignore")


def test_covered_ops_lists_kernels_denials_and_native():
    ops = samebits.covered_ops()
    assert ops["aten::linear"] == "invariant kernel"
    assert ops["aten::convolution"] == "invariant kernel"
    assert ops["aten::logcumsumexp"].startswith("denied:")
    assert ops["aten::cumsum"].startswith("native")
    assert list(ops) == sorted(ops)


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import torch; n = torch.get_num_threads(); d = torch._C._dispatch_dump('aten::mm');"
        "import samebits; assert torch.get_num_threads() == n; assert torch._C._dispatch_dump('aten::mm') == d"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_no_warnings_leak_on_enter():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with samebits.batch_invariant():
            pass


def test_glu_addr_vdot_are_covered_and_close_to_native():
    g = torch.Generator().manual_seed(3)
    a, m = torch.randn(5, 38, generator=g), torch.randn(7, 9, generator=g)
    v1, v2 = torch.randn(7, generator=g), torch.randn(9, generator=g)
    with samebits.batch_invariant():
        glu, glu_row = F.glu(a), F.glu(a[2:3])
        addr = torch.addr(m, v1, v2, beta=0.5, alpha=1.5)
        vdot = torch.vdot(v1, v1)
    assert torch.equal(glu[2:3], glu_row)
    torch.testing.assert_close(glu, F.glu(a))
    torch.testing.assert_close(addr, torch.addr(m, v1, v2, beta=0.5, alpha=1.5))
    torch.testing.assert_close(vdot, torch.vdot(v1, v1))
    ops = samebits.covered_ops()
    assert {ops["aten::glu"], ops["aten::addr"], ops["aten::vdot"]} == {"invariant kernel"}


def test_kernels_stay_for_the_uninstall_delay_then_torchs_come_back(monkeypatch):
    """Entering per call must not cost a registration each time: the kernels stay for
    SAMEBITS_UNINSTALL_DELAY_S after the last exit. Meanwhile, outside the mode, torch's
    own kernels run (native bits, a denied op works); then the registrations are
    restored exactly, by the timer."""
    import time

    assert restored_after_exit()
    before = {op: table(op) for op in ("aten::mm", "aten::linear", "aten::logcumsumexp")}
    a, w = torch.randn(5, 64), torch.randn(32, 64)
    native = F.linear(a, w)
    monkeypatch.setenv("SAMEBITS_UNINSTALL_DELAY_S", "0.3")
    with samebits.batch_invariant():
        pass
    assert _mode.installed() and not samebits.is_batch_invariant()
    assert torch.equal(F.linear(a, w), native)
    torch.logcumsumexp(x, -1)  # denied in the mode only
    with samebits.batch_invariant():  # re-entry within the delay: nothing to register
        assert _mode.installed()
    deadline = time.monotonic() + 10
    while _mode.installed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _mode.installed()
    assert {op: table(op) for op in before} == before


def test_delay_zero_restores_at_each_exit(monkeypatch):
    assert restored_after_exit()
    monkeypatch.setenv("SAMEBITS_UNINSTALL_DELAY_S", "0")
    before = table("aten::mm")
    with samebits.batch_invariant():
        assert _mode.installed()
    assert not _mode.installed() and table("aten::mm") == before


@pytest.mark.parametrize("bad", ["soon", "-1", "nan"])
def test_bad_uninstall_delay_is_refused_before_any_change(monkeypatch, bad):
    assert restored_after_exit()
    monkeypatch.setenv("SAMEBITS_UNINSTALL_DELAY_S", bad)
    with pytest.raises(ValueError, match="SAMEBITS_UNINSTALL_DELAY_S"):
        with samebits.batch_invariant():
            pass
    assert not _mode.installed() and not samebits.is_batch_invariant()


def test_a_forked_child_gets_torchs_kernels_back():
    """The uninstall timer is a thread, which a fork does not copy: the child restores
    torch's kernels itself when no frame holds the mode."""
    import os

    with samebits.batch_invariant():
        pass
    assert _mode.installed()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        os._exit(0 if not _mode.installed() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_uninstall_while_a_thread_outside_the_mode_is_inside_a_wrapper(monkeypatch):
    """The uninstall timer may fire while another thread, outside the mode, has already
    been dispatched to a samebits wrapper of the autograd layer: that call must still
    reach torch's own kernel (it once raised KeyError: its fallback had been dropped).
    The timer's uninstall is run at the worst moment: after dispatch, before the
    fallback."""
    assert restored_after_exit()
    a, w = torch.randn(5, 64), torch.randn(32, 64)
    native = F.linear(a, w)
    monkeypatch.setenv("SAMEBITS_UNINSTALL_DELAY_S", "60")
    with samebits.batch_invariant():
        pass
    assert _mode.installed()
    real = _mode._in_mode_key
    fired = []

    def timer_fires_now() -> bool:
        fired.append(_mode.uninstall_if_idle())
        return real()

    monkeypatch.setattr(_mode, "_in_mode_key", timer_fires_now)
    out = F.linear(a, w)
    monkeypatch.setattr(_mode, "_in_mode_key", real)
    assert fired == [True] and not _mode.installed()
    assert torch.equal(out, native)
