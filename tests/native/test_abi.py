"""The kernel declarations: sb_kernels.h is what samebits/_native/_decls.py generates,
its prototypes give the loader's ctypes table, every path of the library exports every
kernel, and the library's ABI version is the list's."""

import ctypes
import re
from pathlib import Path

from samebits import _native
from samebits._native import _build, _decls

HEADER = Path(_native.__file__).with_name("sb_kernels.h").read_text()
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


def test_generated_header_is_the_lists():
    assert HEADER == _decls.header(), "run: python -m samebits._native._decls"


def test_ctypes_table_matches_the_header():
    protos = prototypes()
    assert len(protos) == len(_decls.KERNELS) >= 16
    assert protos == _native.SIGNATURES


def test_abi_version_follows_the_list(monkeypatch):
    before = _decls.abi_version()
    name, fam, ret, args, note = _decls.KERNELS[0]
    monkeypatch.setattr(_decls, "KERNELS", ((name, fam, ret, args + ", int extra", note),))
    assert _decls.abi_version() != before


def test_every_path_exports_every_function():
    _native.lib()
    dll = _native._state["dll"]
    assert _native.BUILT == _build.built_paths(_build.host_arch())
    assert _native.BUILT[0] == "portable" and len(_native.BUILT) >= 2
    for isa in _native.BUILT:
        if isa in _build.OPTIONAL and not hasattr(dll, f"sb_gemm_{isa}"):
            continue  # left out by a toolchain that cannot build it (test_amx covers the rule)
        for name in _native.SIGNATURES:
            assert hasattr(dll, f"{name}_{isa}"), f"{name}_{isa}"


def test_abi_version_checked():
    want = int(re.search(r"#define SB_ABI_VERSION (\d+)", HEADER).group(1))
    assert want == _native.ABI_VERSION == _decls.abi_version()
    _native.lib()
    assert _native._state["dll"].sb_abi_version() == want
