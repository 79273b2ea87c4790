"""Compiled kernels, one folder per kind of device: the loops that decide a table's speed.
Kernels take arrays and plain numbers only; they never see a `Tensor`."""
