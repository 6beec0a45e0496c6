# One entry point for developers and CI: `make demo`, `make test`, `make bench`, `make lint`.
# The first target that needs it builds .venv, installing torch==2.13.0 first and
# pinned, so no other package can pull a different (CUDA) torch; every other package
# comes at the exact version constraints.txt names.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.samebits-installed
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-torch bench lint venv clean test-aarch64 test-aarch64-cpus wheel-aarch64

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) -c constraints.txt torch==2.13.0 numpy 2>$(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(PIP) -c constraints.txt -e '.[all]' 2>$(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "import torch, samebits, sentence_transformers; assert torch.__version__.startswith('2.13.0')"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/samebits demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The suite on another torch of the supported range (pyproject's torch>=2.13,<2.16):
#   make test-torch TORCH=2.15.0 [TRANSFORMERS=5.25.0] [TESTS="tests/models"]
# builds .venv-torch-<version> (torch from PyPI, the CUDA build, several GB; this
# machine's global pip constraint caps torch, so the install lifts it with
# PIP_CONSTRAINT=/dev/null), every other package at constraints.txt's versions.
TVENV = .venv-torch-$(TORCH)$(if $(TRANSFORMERS),-transformers-$(TRANSFORMERS))
test-torch:
	@test -n "$(TORCH)" || { echo "usage: make test-torch TORCH=2.15.0"; exit 2; }
	@test -x $(TVENV)/bin/python || $(PY) -m venv $(TVENV)
	@test -f $(TVENV)/.installed || { \
	  grep -v '^torch==' constraints.txt | \
	    sed '$(if $(TRANSFORMERS),s/^transformers==.*/transformers==$(TRANSFORMERS)/)' \
	    > $(TVENV)/constraints.txt && \
	  PIP_CONSTRAINT=/dev/null $(TVENV)/bin/python -m pip install -q --disable-pip-version-check \
	    torch==$(TORCH) numpy && \
	  PIP_CONSTRAINT=/dev/null $(TVENV)/bin/python -m pip install -q --disable-pip-version-check \
	    -c $(TVENV)/constraints.txt -e '.[all]' && \
	  $(TVENV)/bin/python -c "import torch; assert torch.__version__.startswith('$(TORCH)'), torch.__version__" && \
	  touch $(TVENV)/.installed; }
	$(TVENV)/bin/python -m pytest -q $(TESTS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The aarch64 slice under qemu-user in a Debian arm64 root built once in
# ~/.cache/samebits-aarch64 (first run ~15 min and ~5.5 GB; then ~2 min + the tests).
# Needs root (debootstrap, chroot, binfmt_misc). QEMU_CPU=neoverse-n1 etc. picks the CPU.
test-aarch64:
	bash tools/aarch64/run.sh

# The kernel hashes under each emulated CPU (Neoverse-N1, Cortex-A57, qemu's max):
# each must equal x86's.
test-aarch64-cpus:
	bash tools/aarch64/cpus.sh

# A manylinux2014 aarch64 wheel cross-built with gcc-aarch64-linux-gnu (into dist/),
# then installed and run in the arm64 root with no compiler.
wheel-aarch64: $(STAMP)
	bash tools/aarch64/wheel.sh

lint: $(STAMP)
	$(BIN)/ruff check samebits tests benchmarks docs/examples tools
	$(BIN)/ruff format --check samebits tests benchmarks docs/examples tools

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
