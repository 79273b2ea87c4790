#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the device tests on CUDA (against the float64 NumPy
# reference), the whole suite on the PyTorch backend, and the benchmark against
# torch.nn.Embedding on CUDA. Run from the repository root; record results in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to PyTorch'; print(torch.cuda.get_device_name(0))"
"$PYTHON" -m pytest -q tests/test_devices.py tests/test_device_dtype.py
EMBTABLE_CPU_BACKEND=torch "$PYTHON" -m pytest -q -p no:cacheprovider
"$PYTHON" -m embtable bench --device cuda:0 "$@"
