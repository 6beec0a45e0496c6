"""Build hook: compile the kernel library into the wheel (a platform wheel, any Python 3).

The C kernels are plain C with no Python or torch API, so the build needs a C compiler
and the standard library only: torch stays out of the build environment. The compile
itself is samebits/_native/_build.py, the same code the loader uses to build into its
cache, so a wheel's library and a cached one are built with the same flags.

Cross-building: with CC naming a compiler for another architecture (e.g.
``CC=aarch64-linux-gnu-gcc``), the library holds that architecture's paths and the
wheel is tagged for it (``manylinux2014_aarch64``: tools/aarch64/wheel.sh checks that
the library needs no glibc symbol newer than 2.17).
"""

import importlib.util
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _builder():
    spec = importlib.util.spec_from_file_location(
        "_samebits_build", ROOT / "samebits" / "_native" / "_build.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return  # an editable install builds into the cache on first use
        b = _builder()
        out = Path(self.build_lib) / "samebits" / "_native" / b.LIB_NAME
        print(f"samebits: building kernels {out}")
        b.compile_library(out)


class PlatformWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        b = _builder()
        arch = b.target_arch(b.compiler())
        if arch != b.host_arch():  # a cross compiler: the target's platform
            plat = f"manylinux2014_{arch}"
        return "py3", "none", plat  # ctypes, not the Python C API


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(
    cmdclass={"build_py": BuildPyWithKernels, "bdist_wheel": PlatformWheel},
    distclass=BinaryDistribution,
)
