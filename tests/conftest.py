import numpy as np
import pytest

import embtable as et


@pytest.fixture(autouse=True)
def restore_defaults():
    """Every test starts and ends with the default device and dtype."""
    yield
    et.set_default_device(et.Device.CPU)
    et.set_default_dtype(et.DType.F32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


class _OnFile:
    """Stands for a table layer class in a test module: builds the layer in memory as the
    class would, then returns it saved and reopened as a file-backed table (writable, with
    a one-row cache budget, so eviction and write-back run at every call)."""

    def __init__(self, cls, folder):
        self._cls, self._folder, self._count = cls, folder, 0

    def _on_file(self, layer):
        self._count += 1
        path = self._folder / f"{self._cls.__name__}-{self._count}.safetensors"
        layer.save(path)
        opened = self._cls.open(path, writable=True, cache_bytes=1)
        assert opened.path == str(path)
        return opened

    def __call__(self, *args, **kwargs):
        return self._on_file(self._cls(*args, **kwargs))

    def from_pretrained(self, *args, **kwargs):
        return self._on_file(self._cls.from_pretrained(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._cls, name)


@pytest.fixture(params=["memory", "file"])
def both_storages(request, monkeypatch, tmp_path):
    """Run the requesting module's tests twice: with its `Embedding` and `EmbeddingBag`
    in memory, and file-backed (`_OnFile`)."""
    if request.param == "file":
        for name in ("Embedding", "EmbeddingBag"):
            if hasattr(request.module, name):
                monkeypatch.setattr(request.module, name, _OnFile(getattr(request.module, name), tmp_path))
    return request.param
