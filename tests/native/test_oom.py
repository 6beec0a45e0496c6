"""Kernels whose work buffers cannot be allocated return -1 (the Python side raises
MemoryError) instead of writing through a null pointer. Sizes no allocator grants
make malloc fail before any input is read."""

import ctypes

from samebits import _native


def test_sum_all_reports_a_failed_allocation():
    out = ctypes.c_double(1.0)
    lib = _native.lib()
    assert lib.sb_sum_all(ctypes.c_void_p(8), 1 << 62, 0, 1, ctypes.byref(out)) == -1
    x = (ctypes.c_float * 3)(1.0, 2.0, 4.0)
    assert lib.sb_sum_all(ctypes.cast(x, ctypes.c_void_p), 3, 0, 1, ctypes.byref(out)) == 0
    assert out.value == 7.0


def test_softmax_reports_a_failed_allocation():
    lib = _native.lib()
    assert lib.sb_softmax(8, 8, 1, 1 << 58, 0, 0, 0, 2) == -1
    x, y = (ctypes.c_float * 2)(0.0, 0.0), (ctypes.c_float * 2)()
    assert lib.sb_softmax(ctypes.addressof(x), ctypes.addressof(y), 1, 2, 0, 0, 0, 1) == 0
    assert list(y) == [0.5, 0.5]
