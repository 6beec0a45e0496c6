"""The ctypes table in samebits/_native matches the C prototypes in sb_common.h, and
the library's ABI version is the one the loader expects."""

import ctypes
import re
from pathlib import Path

from samebits import _native

HEADER = Path(_native.__file__).with_name("sb_common.h").read_text()
C_TYPES = {
    "i64": ctypes.c_int64,
    "int": ctypes.c_int,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
    "void": None,
}


def c_to_ctypes(decl: str):
    decl = decl.replace("const ", "").strip()
    if "*" in decl:
        return ctypes.c_void_p
    return C_TYPES[decl.split()[0]]


def c_return(decl: str):
    """A return type: a C string (const char *) is c_char_p, else as c_to_ctypes."""
    if decl.replace(" ", "") == "constchar*":
        return ctypes.c_char_p
    return C_TYPES[decl.strip()]


def prototypes() -> dict[str, tuple[list, object]]:
    out = {}
    for ret, name, args in re.findall(r"SB_API ([\w ]+\*?) ?SB_FN\((\w+)\)\(([^)]*)\);", HEADER):
        params = [] if args.strip() == "void" else [c_to_ctypes(a) for a in args.split(",")]
        out[name] = (params, c_return(ret))
    return out


def test_ctypes_table_matches_the_header():
    protos = prototypes()
    assert len(protos) >= 10
    assert protos == _native.SIGNATURES


def test_every_path_exports_every_function():
    _native.lib()
    dll = _native._state["dll"]
    assert set(_native.ISAS) < set(_native.BUILT) and "amx" in _native.BUILT
    from samebits._native import _build

    for isa in _native.BUILT:
        if isa in _build.OPTIONAL and not hasattr(dll, f"sb_gemm_{isa}"):
            continue  # left out by a toolchain that cannot build it (test_amx covers the rule)
        for name in _native.SIGNATURES:
            assert hasattr(dll, f"{name}_{isa}"), f"{name}_{isa}"


def test_abi_version_checked():
    want = int(re.search(r"#define SB_ABI_VERSION (\d+)", HEADER).group(1))
    assert want == _native.ABI_VERSION
    _native.lib()
    assert _native._state["dll"].sb_abi_version() == want
