# `make demo` and `make test` work on a fresh machine with Python >= 3.10 and pip: each
# creates .venv when it is missing and installs what it needs (again when pyproject.toml
# changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

demo: $(VENV)/.installed-demo
	$(BIN)/embtable demo

# The whole suite twice: CPU tensors on NumPy (the default), then on PyTorch, the code path
# that CUDA and MPS take; tests marked backend_independent (sharded tables' process failures
# and files: Ray and file code, the same under either backend) run in the first pass only.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q
	EMBTABLE_CPU_BACKEND=torch $(BIN)/python -m pytest -q -p no:cacheprovider -m "not backend_independent"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV)
