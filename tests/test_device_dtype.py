"""SPEC §1 (devices, dtypes, defaults, manual_seed) and §2 (the error classes)."""

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et

ALL_DTYPE_NAMES = ["BF16", "F16", "F32", "F64", "BOOL",
                   "U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64"]
FLOAT_DTYPES = [et.DType.BF16, et.DType.F16, et.DType.F32, et.DType.F64]
NON_FLOAT_DTYPES = [t for t in et.DType if t not in FLOAT_DTYPES]

NUMPY_OF = {
    "BF16": np.dtype(ml_dtypes.bfloat16), "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32), "F64": np.dtype(np.float64), "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8), "U16": np.dtype(np.uint16), "U32": np.dtype(np.uint32),
    "U64": np.dtype(np.uint64), "I8": np.dtype(np.int8), "I16": np.dtype(np.int16),
    "I32": np.dtype(np.int32), "I64": np.dtype(np.int64),
}
TORCH_OF = {
    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32,
    "F64": torch.float64, "BOOL": torch.bool, "U8": torch.uint8, "U16": torch.uint16,
    "U32": torch.uint32, "U64": torch.uint64, "I8": torch.int8, "I16": torch.int16,
    "I32": torch.int32, "I64": torch.int64,
}
NAME_OF = {
    "BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "BOOL": "bool",
    "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "I8": "int8",
    "I16": "int16", "I32": "int32", "I64": "int64",
}


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


# --- Device values ----------------------------------------------------------------------


def test_device_constants_are_devices():
    assert isinstance(et.Device.CPU, et.Device)
    assert isinstance(et.Device.MPS, et.Device)
    assert isinstance(et.Device.CUDA(0), et.Device)
    assert et.Device.CPU != et.Device.MPS
    assert et.Device.CPU != et.Device.CUDA(0)
    assert et.Device.MPS != et.Device.CUDA(0)


@pytest.mark.parametrize("index", [0, 1, 7, 1000])
def test_building_cuda_device_never_fails_and_keeps_index(index):
    # No GPU is needed to build the value.
    d = et.Device.CUDA(index)
    assert d == et.Device.CUDA(index)
    assert hash(d) == hash(et.Device.CUDA(index))
    assert str(d) == f"cuda:{index}"
    assert d != et.Device.CUDA(index + 1)


def test_cuda_devices_differ_by_index():
    assert et.Device.CUDA(0) != et.Device.CUDA(1)
    assert len({et.Device.CUDA(0), et.Device.CUDA(1), et.Device.CUDA(0)}) == 2


@pytest.mark.parametrize("index", [-1, -5])
def test_negative_cuda_index_rejected(index):
    with pytest.raises(et.InvalidArgumentError):
        et.Device.CUDA(index)


def test_str_of_devices():
    assert str(et.Device.CUDA(1)) == "cuda:1"
    assert str(et.Device.CUDA(0)) == "cuda:0"
    assert str(et.Device.CPU) == "cpu"
    assert str(et.Device.MPS) == "mps"


@pytest.mark.parametrize("text, expected", [
    ("cpu", et.Device.CPU),
    ("mps", et.Device.MPS),
    ("cuda", et.Device.CUDA(0)),
    ("cuda:0", et.Device.CUDA(0)),
    ("cuda:1", et.Device.CUDA(1)),
    ("cuda:12", et.Device.CUDA(12)),
])
def test_parse(text, expected):
    parsed = et.Device.parse(text)
    assert isinstance(parsed, et.Device)
    assert parsed == expected
    assert hash(parsed) == hash(expected)


@pytest.mark.parametrize("device", [et.Device.CPU, et.Device.MPS, et.Device.CUDA(0),
                                    et.Device.CUDA(3)])
def test_parse_str_round_trip(device):
    assert et.Device.parse(str(device)) == device


@pytest.mark.parametrize("text", [
    "", "gpu", "tpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1.5", "cuda:1:2", "cuda0",
    "mps:1", "cpux", "cuda:²",
])
def test_parse_rejects_bad_strings(text):
    with pytest.raises(et.InvalidArgumentError):
        et.Device.parse(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=8).map(lambda s: "cuda:" + s) | st.text(max_size=8))
def test_parse_returns_device_or_raises_invalid_argument(text):
    # Whatever the string, parse gives a Device or an InvalidArgumentError - never another
    # exception type.
    try:
        d = et.Device.parse(text)
    except et.InvalidArgumentError:
        return
    assert isinstance(d, et.Device)
    assert et.Device.parse(str(d)) == d


# --- placing data on an unavailable device -------------------------------------------


def _expect_unavailable(device_text, build):
    with pytest.raises(et.DeviceError) as info:
        build()
    assert device_text in str(info.value)
    # DeviceError is also a RuntimeError.
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("device", ["cuda:0", et.Device.CUDA(0)])
def test_tensor_on_cuda0(device):
    if cuda_count() > 0:  # a machine with a GPU: placing works
        t = et.Tensor([1.0], device=device)
        assert t.device == et.Device.CUDA(0)
        assert t.tolist() == [1.0]
    else:
        _expect_unavailable("cuda:0", lambda: et.Tensor([1.0], device=device))


def test_tensor_on_absent_cuda_ordinal_names_it():
    # No machine has 100 GPUs.
    _expect_unavailable("cuda:99", lambda: et.Tensor([1.0], device=et.Device.CUDA(99)))
    _expect_unavailable("cuda:99", lambda: et.Tensor([1.0], device="cuda:99"))


@pytest.mark.parametrize("device", ["mps", et.Device.MPS])
def test_tensor_on_mps(device):
    if mps_available():
        assert et.Tensor([1.0], device=device).device == et.Device.MPS
    else:
        _expect_unavailable("mps", lambda: et.Tensor([1.0], device=device))


def test_tensor_to_unavailable_device_raises_and_keeps_source():
    t = et.Tensor([1.0, 2.0])
    _expect_unavailable("cuda:99", lambda: t.to(device="cuda:99"))
    assert t.device == et.Device.CPU
    assert t.tolist() == [1.0, 2.0]


def test_layer_on_unavailable_device_raises():
    _expect_unavailable("cuda:99", lambda: et.nn.Embedding(4, 3, device="cuda:99"))


# --- default device ----------------------------------------------------------------------


def test_default_device_is_cpu():
    assert et.get_default_device() == et.Device.CPU
    assert et.Tensor([1.0]).device == et.Device.CPU


@pytest.mark.parametrize("value", ["cpu", et.Device.CPU])
def test_set_default_device_cpu(value):
    et.set_default_device(value)
    assert et.get_default_device() == et.Device.CPU
    assert et.Tensor([1, 2]).device == et.Device.CPU


def test_set_default_device_cuda_raises_and_changes_nothing():
    if cuda_count() > 0:
        et.set_default_device("cuda")
        assert et.get_default_device() == et.Device.CUDA(0)
        assert et.Tensor([1.0]).device == et.Device.CUDA(0)
    else:
        _expect_unavailable("cuda:0", lambda: et.set_default_device("cuda"))
        assert et.get_default_device() == et.Device.CPU
        assert et.Tensor([1.0]).device == et.Device.CPU


def test_set_default_device_unavailable_ordinal_raises_and_changes_nothing():
    _expect_unavailable("cuda:99", lambda: et.set_default_device(et.Device.CUDA(99)))
    assert et.get_default_device() == et.Device.CPU


def test_set_default_device_mps():
    if mps_available():
        et.set_default_device(et.Device.MPS)
        assert et.get_default_device() == et.Device.MPS
    else:
        _expect_unavailable("mps", lambda: et.set_default_device(et.Device.MPS))
        assert et.get_default_device() == et.Device.CPU


def test_set_default_device_bad_string():
    with pytest.raises(et.InvalidArgumentError):
        et.set_default_device("gpu")
    assert et.get_default_device() == et.Device.CPU


# --- DType -------------------------------------------------------------------------------


def test_dtype_members_exactly():
    assert sorted(m.name for m in et.DType) == sorted(ALL_DTYPE_NAMES)
    for name in ALL_DTYPE_NAMES:
        assert isinstance(getattr(et.DType, name), et.DType)


@pytest.mark.parametrize("name", ALL_DTYPE_NAMES)
def test_every_dtype_builds_a_tensor(name):
    dtype = getattr(et.DType, name)
    t = et.Tensor([0, 1], dtype=dtype)
    assert t.dtype is dtype
    assert t.numpy().dtype == NUMPY_OF[name]


@pytest.mark.parametrize("name", ALL_DTYPE_NAMES)
@pytest.mark.parametrize("spelling", ["dtype_member", "numpy_dtype", "numpy_type", "name",
                                      "short_name", "torch"])
def test_dtype_spellings_are_accepted(name, spelling):
    value = {
        "dtype_member": getattr(et.DType, name),
        "numpy_dtype": NUMPY_OF[name],
        "numpy_type": NUMPY_OF[name].type,
        "name": NAME_OF[name],
        "short_name": name,
        "torch": TORCH_OF[name],
    }[spelling]
    t = et.Tensor([1, 0], dtype=value)
    assert t.dtype is getattr(et.DType, name)
    assert t.numpy().dtype == NUMPY_OF[name]
    assert t.tolist() == ([True, False] if name == "BOOL" else [1, 0])


@pytest.mark.parametrize("bad", ["float128x", "complex64", "str", np.complex128, object])
def test_bad_dtype_is_a_dtype_error(bad):
    with pytest.raises(et.DTypeError):
        et.Tensor([1.0], dtype=bad)


# --- default dtype ----------------------------------------------------------------------


def test_default_dtype_is_f32():
    assert et.get_default_dtype() is et.DType.F32
    assert et.Tensor([1.5]).dtype is et.DType.F32
    assert et.Tensor(1.5).dtype is et.DType.F32


@pytest.mark.parametrize("value, expected", [
    (et.DType.F64, et.DType.F64),
    (et.DType.F16, et.DType.F16),
    (et.DType.BF16, et.DType.BF16),
    ("float64", et.DType.F64),
    ("bfloat16", et.DType.BF16),
    ("F16", et.DType.F16),
    (np.float64, et.DType.F64),
    (np.dtype(np.float16), et.DType.F16),
    (torch.float64, et.DType.F64),
    (torch.bfloat16, et.DType.BF16),
])
def test_set_default_dtype_float(value, expected):
    et.set_default_dtype(value)
    assert et.get_default_dtype() is expected
    # New tensors from Python floats take the new default ...
    t = et.Tensor([[0.5, 1.5], [2.0, -3.0]])
    assert t.dtype is expected
    assert t.numpy().dtype == NUMPY_OF[expected.name]
    assert t.tolist() == [[0.5, 1.5], [2.0, -3.0]]
    assert et.Tensor(0.25).dtype is expected
    assert et.Tensor.new([1.0]).dtype is expected
    # ... but ints stay I64, bools BOOL, and NumPy arrays keep their dtype.
    assert et.Tensor([1, 2]).dtype is et.DType.I64
    assert et.Tensor([True]).dtype is et.DType.BOOL
    assert et.Tensor(np.zeros(2, dtype=np.float32)).dtype is et.DType.F32


def test_set_default_dtype_changes_new_layers():
    et.set_default_dtype(et.DType.F64)
    assert et.nn.Embedding(3, 2).weight.dtype is et.DType.F64


@pytest.mark.parametrize("bad", [et.DType.I64, et.DType.I32, et.DType.U8, et.DType.BOOL,
                                 "int64", "int8", "bool", np.int32, np.dtype(np.uint16),
                                 torch.int64])
def test_set_default_dtype_rejects_non_float(bad):
    with pytest.raises(et.DTypeError):
        et.set_default_dtype(bad)
    # An operation that raises changes nothing.
    assert et.get_default_dtype() is et.DType.F32
    assert et.Tensor([1.0]).dtype is et.DType.F32


def test_set_default_dtype_rejects_nonsense():
    with pytest.raises(et.DTypeError):
        et.set_default_dtype("not-a-dtype")
    assert et.get_default_dtype() is et.DType.F32


# --- manual_seed -------------------------------------------------------------------------


def test_manual_seed_repeats_embedding_weights_exactly():
    et.manual_seed(1234)
    a = et.nn.Embedding(50, 8).weight.numpy()
    b_after = et.nn.Embedding(50, 8).weight.numpy()
    et.manual_seed(1234)
    c = et.nn.Embedding(50, 8).weight.numpy()
    d_after = et.nn.Embedding(50, 8).weight.numpy()
    assert a.shape == (50, 8)
    assert np.array_equal(a, c)
    assert np.array_equal(b_after, d_after)
    # The generator advances: two draws after one seed differ.
    assert not np.array_equal(a, b_after)


def test_different_seeds_differ():
    et.manual_seed(1)
    a = et.nn.Embedding(50, 8).weight.numpy()
    et.manual_seed(2)
    b = et.nn.Embedding(50, 8).weight.numpy()
    assert not np.array_equal(a, b)
    # Nearly every entry differs, not just a few.
    assert np.mean(a != b) > 0.9


# --- errors ------------------------------------------------------------------------------


ERRORS = [
    (et.IndexOutOfRangeError, IndexError),
    (et.DTypeError, TypeError),
    (et.ShapeError, ValueError),
    (et.InvalidArgumentError, ValueError),
    (et.DeviceError, RuntimeError),
    (et.SerializationError, ValueError),
]


def test_error_base_is_an_exception():
    assert issubclass(et.Error, Exception)


@pytest.mark.parametrize("cls, builtin", ERRORS)
def test_error_hierarchy(cls, builtin):
    assert issubclass(cls, et.Error)
    assert issubclass(cls, builtin)
    # Ordinary except clauses catch it, and so does except et.Error.
    with pytest.raises(builtin):
        raise cls("boom")
    with pytest.raises(et.Error):
        raise cls("boom")
    assert str(cls("a message")) == "a message"


def test_error_classes_are_distinct():
    classes = [cls for cls, _ in ERRORS]
    assert len(set(classes)) == len(classes)
    for cls in classes:
        for other in classes:
            if cls is not other:
                assert not issubclass(cls, other)


def test_raised_errors_are_catchable_as_builtins():
    # Errors raised by the library itself, caught through the built-in.
    with pytest.raises(ValueError):
        et.Device.parse("gpu")
    with pytest.raises(TypeError):
        et.Tensor(["a", "b"])
    with pytest.raises(ValueError):
        et.Tensor([1, 2, 3]).reshape(2, 2)
    with pytest.raises(RuntimeError):
        et.Tensor([1.0], device="cuda:99")
    with pytest.raises(IndexError):
        et.nn.Embedding(3, 2)(et.Tensor([3]))
