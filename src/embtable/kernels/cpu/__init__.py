"""numba kernels for the CPU (NumPy) backend.

Compiled on first use and cached on disk (``cache=True``), never at import: the NumPy
backend imports these modules, and so numba itself, only when a kernel is first needed.
Loops over rows run in parallel (``prange``); no two threads ever write the same row, so
every result is deterministic.
"""
