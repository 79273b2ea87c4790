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
