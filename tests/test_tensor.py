"""SPEC §3, construction and inspection of `et.Tensor` (autograd and arithmetic elsewhere)."""

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import embtable as et

BF16 = np.dtype(ml_dtypes.bfloat16)
NUMPY_OF = {
    et.DType.BF16: BF16, et.DType.F16: np.dtype(np.float16),
    et.DType.F32: np.dtype(np.float32), et.DType.F64: np.dtype(np.float64),
    et.DType.BOOL: np.dtype(np.bool_), et.DType.U8: np.dtype(np.uint8),
    et.DType.U16: np.dtype(np.uint16), et.DType.U32: np.dtype(np.uint32),
    et.DType.U64: np.dtype(np.uint64), et.DType.I8: np.dtype(np.int8),
    et.DType.I16: np.dtype(np.int16), et.DType.I32: np.dtype(np.int32),
    et.DType.I64: np.dtype(np.int64),
}
TORCH_OF = {
    et.DType.BF16: torch.bfloat16, et.DType.F16: torch.float16, et.DType.F32: torch.float32,
    et.DType.F64: torch.float64, et.DType.BOOL: torch.bool, et.DType.U8: torch.uint8,
    et.DType.U16: torch.uint16, et.DType.U32: torch.uint32, et.DType.U64: torch.uint64,
    et.DType.I8: torch.int8, et.DType.I16: torch.int16, et.DType.I32: torch.int32,
    et.DType.I64: torch.int64,
}
ALL_DTYPES = list(NUMPY_OF)
FLOAT_DTYPES = [et.DType.BF16, et.DType.F16, et.DType.F32, et.DType.F64]
NON_FLOAT_DTYPES = [t for t in ALL_DTYPES if t not in FLOAT_DTYPES]


def sample(dtype: et.DType, shape=(2, 3)) -> np.ndarray:
    """A NumPy array of `dtype` with distinct, exactly representable values."""
    n = int(np.prod(shape))
    if dtype is et.DType.BOOL:
        values = np.arange(n) % 3 == 1
    elif dtype in (et.DType.U8, et.DType.U16, et.DType.U32, et.DType.U64):
        values = np.arange(n) * 3 + 1
    else:
        values = (np.arange(n) - n // 2) * (0.5 if dtype in FLOAT_DTYPES else 3)
    return np.asarray(values).astype(NUMPY_OF[dtype]).reshape(shape)


def same(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Same dtype, shape and bits."""
    return (actual.dtype == expected.dtype and actual.shape == expected.shape
            and np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes())


# --- from Python data --------------------------------------------------------------------


@pytest.mark.parametrize("factory", [et.Tensor, et.Tensor.new], ids=["Tensor", "Tensor.new"])
def test_from_int_list_is_i64(factory):
    t = factory([1, 3, 5, 7])
    assert isinstance(t, et.Tensor)
    assert t.dtype is et.DType.I64
    assert t.shape == (4,)
    assert t.tolist() == [1, 3, 5, 7]
    assert t.device == et.Device.CPU
    assert t.requires_grad is False
    assert t.grad is None


@pytest.mark.parametrize("factory", [et.Tensor, et.Tensor.new], ids=["Tensor", "Tensor.new"])
def test_from_float_list_is_default_dtype(factory):
    t = factory([[0.5, 1.5], [-2.0, 3.25]])
    assert t.dtype is et.DType.F32
    assert t.shape == (2, 2)
    assert t.tolist() == [[0.5, 1.5], [-2.0, 3.25]]
    assert t.numpy().dtype == np.float32


@pytest.mark.parametrize("factory", [et.Tensor, et.Tensor.new], ids=["Tensor", "Tensor.new"])
def test_from_bool_list_is_bool(factory):
    t = factory([[True, False, True]])
    assert t.dtype is et.DType.BOOL
    assert t.shape == (1, 3)
    assert t.tolist() == [[True, False, True]]


def test_tensor_new_passes_all_arguments():
    t = et.Tensor.new([1, 2], dtype=et.DType.F64, device="cpu", requires_grad=True)
    assert t.dtype is et.DType.F64
    assert t.device == et.Device.CPU
    assert t.requires_grad is True
    assert t.tolist() == [1.0, 2.0]


def test_mixed_int_and_float_is_float():
    t = et.Tensor([1, 2.5, 3])
    assert t.dtype is et.DType.F32
    assert t.tolist() == [1.0, 2.5, 3.0]


def test_from_tuple():
    t = et.Tensor(((1, 2), (3, 4)))
    assert t.shape == (2, 2)
    assert t.dtype is et.DType.I64
    assert t.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("value, dtype, expected", [
    (3, et.DType.I64, 3),
    (-7, et.DType.I64, -7),
    (2.5, et.DType.F32, 2.5),
    (True, et.DType.BOOL, True),
    (False, et.DType.BOOL, False),
])
def test_from_python_scalar_is_0d(value, dtype, expected):
    t = et.Tensor(value)
    assert t.shape == ()
    assert t.ndim == 0
    assert t.numel() == 1
    assert t.dtype is dtype
    item = t.item()
    assert item == expected
    assert type(item) is type(expected)
    assert t.tolist() == expected


def test_empty_list_is_float_of_shape_0():
    # As in PyTorch: torch.tensor([]) is a float32 tensor of shape (0,).
    t = et.Tensor([])
    assert t.shape == (0,)
    assert t.numel() == 0
    assert t.dtype is et.DType.F32
    assert t.tolist() == []


def test_nested_empty_lists():
    t = et.Tensor([[], []])
    assert t.shape == (2, 0)
    assert t.numel() == 0
    assert len(t) == 2


@pytest.mark.parametrize("ragged", [
    [[1, 2], [3]],
    [1, [2]],
    [[1.0], [2.0, 3.0]],
    [[[1], [2]], [[3]]],
])
def test_ragged_lists_are_shape_errors(ragged):
    with pytest.raises(et.ShapeError):
        et.Tensor(ragged)
    with pytest.raises(et.ShapeError):
        et.Tensor.new(ragged)


@pytest.mark.parametrize("text", ["abc", ["a", "b"], [1, "a"], [["1.0"]], b"bytes"])
def test_strings_are_dtype_errors(text):
    with pytest.raises(et.DTypeError):
        et.Tensor(text)


def test_python_data_is_copied():
    data = [[1.0, 2.0], [3.0, 4.0]]
    t = et.Tensor(data)
    data[0][0] = 99.0
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_default_dtype_applies_to_python_floats():
    et.set_default_dtype(et.DType.F64)
    assert et.Tensor([0.1]).dtype is et.DType.F64
    assert et.Tensor([0.1]).tolist() == [0.1]  # exactly, as float64 keeps it
    assert et.Tensor([1, 2]).dtype is et.DType.I64
    et.set_default_dtype(et.DType.F16)
    assert et.Tensor([[1.5]]).dtype is et.DType.F16


# --- from NumPy ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_from_numpy_keeps_dtype_and_values(dtype):
    a = sample(dtype)
    t = et.Tensor(a)
    assert t.dtype is dtype
    assert t.shape == a.shape
    assert same(t.numpy(), a)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_from_numpy_is_copied(dtype):
    a = sample(dtype)
    expected = a.copy()
    t = et.Tensor(a)
    a[...] = a.flat[-1]  # overwrite the source
    assert not np.array_equal(a, expected)  # the source did change
    assert same(t.numpy(), expected)


def test_from_numpy_float64_is_not_downcast():
    a = np.array([0.1, 1e300, -2.5e-310])
    t = et.Tensor(a)
    assert t.dtype is et.DType.F64
    assert same(t.numpy(), a)


def test_from_numpy_bfloat16():
    a = np.array([[1.5, -2.0], [0.0078125, 3e38]], dtype=BF16)
    t = et.Tensor(a)
    assert t.dtype is et.DType.BF16
    assert same(t.numpy(), a)


def test_from_numpy_zero_d_and_non_contiguous():
    z = np.array(5, dtype=np.int16)
    t = et.Tensor(z)
    assert t.shape == () and t.dtype is et.DType.I16 and t.item() == 5

    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[::2, 1::2].T  # strided, transposed view
    t = et.Tensor(view)
    assert t.shape == (3, 2)
    assert same(t.numpy(), np.ascontiguousarray(view))
    f = np.asfortranarray(base)
    assert same(et.Tensor(f).numpy(), base)


@pytest.mark.parametrize("np_type, dtype", [
    (np.float16, et.DType.F16), (np.float32, et.DType.F32), (np.float64, et.DType.F64),
    (np.int8, et.DType.I8), (np.int32, et.DType.I32), (np.uint64, et.DType.U64),
    (np.bool_, et.DType.BOOL),
])
def test_from_numpy_scalar_keeps_dtype(np_type, dtype):
    # A NumPy scalar is NumPy data: its dtype is kept, as for 0-d arrays (and as
    # torch.tensor(np.float64(1.0)) gives float64).
    t = et.Tensor(np_type(1))
    assert t.shape == ()
    assert t.dtype is dtype


@pytest.mark.parametrize("byteorder_dtype, dtype", [(">i4", et.DType.I32),
                                                    (">f8", et.DType.F64),
                                                    (">u2", et.DType.U16)])
def test_from_numpy_big_endian(byteorder_dtype, dtype):
    # Data read from a big-endian file is still an int32 / float64 / uint16 array.
    a = np.array([1, 2, 300], dtype=byteorder_dtype)
    t = et.Tensor(a)
    assert t.dtype is dtype
    assert t.tolist() == [1, 2, 300]


# --- from PyTorch ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_from_torch_keeps_dtype_and_values(dtype):
    expected = sample(dtype)
    src = torch.tensor(expected.astype(np.float64)).to(TORCH_OF[dtype])
    t = et.Tensor(src)
    assert t.dtype is dtype
    assert t.shape == tuple(src.shape)
    assert same(t.numpy(), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_from_torch_is_copied(dtype):
    expected = sample(dtype)
    src = torch.tensor(expected.astype(np.float64)).to(TORCH_OF[dtype])
    t = et.Tensor(src)
    src.fill_(0)
    assert same(t.numpy(), expected)


def test_from_torch_bfloat16_exact_bits():
    src = torch.tensor([1.5, -0.0, 3.140625, 1e-30], dtype=torch.bfloat16)
    t = et.Tensor(src)
    assert t.dtype is et.DType.BF16
    bits = t.numpy().view(np.int16)
    assert bits.tolist() == src.view(torch.int16).tolist()


def test_from_torch_requires_grad():
    src = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    t = et.Tensor(src)
    assert t.dtype is et.DType.F32
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t.requires_grad is False  # as torch.tensor(src) does
    with torch.no_grad():
        src.mul_(10)
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    u = et.Tensor(src, requires_grad=True)
    assert u.requires_grad is True
    assert u.tolist() == [[10.0, 20.0], [30.0, 40.0]]


def test_from_torch_non_contiguous():
    src = torch.arange(12, dtype=torch.float64).reshape(3, 4).T[:, ::2]
    t = et.Tensor(src)
    assert t.shape == (4, 2)
    assert t.tolist() == src.tolist()
    src_bf = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).T
    assert et.Tensor(src_bf).tolist() == src_bf.float().tolist()


def test_from_torch_with_dtype_cast():
    t = et.Tensor(torch.tensor([1, 2, 3]), dtype=et.DType.F16)
    assert t.dtype is et.DType.F16
    assert t.tolist() == [1.0, 2.0, 3.0]


# --- from another et.Tensor --------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_from_tensor_copies_and_keeps_dtype(dtype):
    src = et.Tensor(sample(dtype))
    t = et.Tensor(src)
    assert t is not src
    assert t.dtype is dtype
    assert same(t.numpy(), src.numpy())
    assert not np.shares_memory(np.asarray(t), np.asarray(src))


def test_from_tensor_does_not_inherit_requires_grad_unless_asked():
    src = et.Tensor([1.0, 2.0], requires_grad=True)
    assert et.Tensor(src).requires_grad is False
    assert et.Tensor(src, requires_grad=True).requires_grad is True


def test_from_tensor_with_dtype_cast():
    src = et.Tensor([1.25, -2.75])
    t = et.Tensor(src, dtype=et.DType.F64)
    assert t.dtype is et.DType.F64
    assert t.tolist() == [1.25, -2.75]
    assert src.dtype is et.DType.F32


# --- dtype= casts ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_dtype_argument_casts_python_data(dtype):
    t = et.Tensor([[0, 1], [1, 0]], dtype=dtype)
    assert t.dtype is dtype
    assert t.numpy().dtype == NUMPY_OF[dtype]
    assert same(t.numpy(), np.array([[0, 1], [1, 0]]).astype(NUMPY_OF[dtype]))


def test_dtype_argument_float_to_int_truncates_like_torch():
    t = et.Tensor([1.7, -2.2, 3.0], dtype=et.DType.I32)
    expected = torch.tensor([1.7, -2.2, 3.0], dtype=torch.int32).tolist()
    assert t.tolist() == expected == [1, -2, 3]


@pytest.mark.parametrize("spelling", [et.DType.F16, np.float16, np.dtype("float16"),
                                      "float16", "F16", torch.float16])
def test_dtype_argument_spellings(spelling):
    t = et.Tensor(np.array([1.0, 2.0]), dtype=spelling)
    assert t.dtype is et.DType.F16
    assert t.tolist() == [1.0, 2.0]


def test_dtype_argument_overrides_numpy_dtype():
    a = np.array([1.5, 2.5], dtype=np.float64)
    t = et.Tensor(a, dtype="bfloat16")
    assert t.dtype is et.DType.BF16
    assert t.tolist() == [1.5, 2.5]
    assert a.dtype == np.float64  # the source is untouched


# --- reshape -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(2, 2), ((2, 2),), ([2, 2],), (-1, 2), (2, -1),
                                  ((-1, 2),), ([2, -1],)])
def test_reshape_forms(args):
    t = et.Tensor([1, 2, 3, 4])
    b = t.reshape(*args)
    assert isinstance(b, et.Tensor)
    assert b.shape == (2, 2)
    assert b.tolist() == [[1, 2], [3, 4]]
    assert b.dtype is et.DType.I64
    assert t.shape == (4,)  # the source keeps its shape
    assert t.tolist() == [1, 2, 3, 4]


def test_reshape_infers_minus_one_in_any_position():
    t = et.Tensor(np.arange(24, dtype=np.float32))
    assert t.reshape(-1, 3, 4).shape == (2, 3, 4)
    assert t.reshape(2, -1, 4).shape == (2, 3, 4)
    assert t.reshape(2, 3, -1).shape == (2, 3, 4)
    assert t.reshape(-1).shape == (24,)
    assert t.reshape(2, 3, 4).reshape(-1).tolist() == list(range(24))
    assert et.Tensor([7]).reshape(()).shape == ()
    assert et.Tensor([7]).reshape([]).item() == 7
    assert et.Tensor(7).reshape(1, 1).shape == (1, 1)
    assert et.Tensor(np.zeros((2, 0))).reshape(0, 5).shape == (0, 5)
    assert et.Tensor(np.zeros((2, 0))).reshape(-1).shape == (0,)


@pytest.mark.parametrize("args", [(-1, -1), ((-1, -1),), (3,), (3, -1), (5, 1), ((2, 3),),
                                  (-2, -2), (0,)])
def test_reshape_bad_shapes_are_shape_errors(args):
    t = et.Tensor([1, 2, 3, 4])
    with pytest.raises(et.ShapeError):
        t.reshape(*args)
    assert t.shape == (4,)


# --- inspection ------------------------------------------------------------------------


def test_shape_ndim_numel_len():
    t = et.Tensor(np.zeros((2, 3, 4), dtype=np.int8))
    assert t.shape == (2, 3, 4)
    assert type(t.shape) is tuple
    assert all(type(d) is int for d in t.shape)
    assert t.ndim == 3
    assert t.numel() == 24
    assert type(t.numel()) is int
    assert len(t) == 2
    e = et.Tensor(np.zeros((3, 0)))
    assert e.shape == (3, 0) and e.numel() == 0 and len(e) == 3 and e.ndim == 2


def test_len_of_0d_is_type_error():
    with pytest.raises(TypeError):
        len(et.Tensor(3.0))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_dtype_property_is_a_dtype(dtype):
    t = et.Tensor(sample(dtype))
    assert isinstance(t.dtype, et.DType)
    assert t.dtype is dtype


def test_device_property():
    assert et.Tensor([1]).device == et.Device.CPU
    assert isinstance(et.Tensor([1]).device, et.Device)
    assert et.Tensor([1], device="cpu").device == et.Device.CPU
    assert et.Tensor([1], device=et.Device.CPU).device == et.Device.CPU
    assert et.Tensor([1], device=None).device == et.Device.CPU


# --- getting values out ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_numpy_returns_a_copy(dtype):
    a = sample(dtype)
    t = et.Tensor(a)
    n = t.numpy()
    assert isinstance(n, np.ndarray)
    assert same(n, a)
    n[...] = n.flat[-1]
    assert same(t.numpy(), a)
    assert t.numpy() is not t.numpy()


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_numpy_asarray(dtype):
    a = sample(dtype)
    t = et.Tensor(a)
    assert same(np.asarray(t), a)
    assert same(np.array(t), a)
    assert np.asarray(t, dtype=np.float64).tolist() == a.astype(np.float64).tolist()


@pytest.mark.parametrize("dtype", [d for d in ALL_DTYPES if d is not et.DType.BF16], ids=str)
def test_numpy_from_dlpack(dtype):
    # NumPy itself cannot import bfloat16 through DLPack, so BF16 is left out here.
    a = sample(dtype)
    t = et.Tensor(a)
    assert same(np.from_dlpack(t), a)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_torch_from_dlpack(dtype):
    a = sample(dtype)
    t = et.Tensor(a)
    out = torch.from_dlpack(t)
    assert out.dtype == TORCH_OF[dtype]
    assert tuple(out.shape) == a.shape
    assert out.to(torch.float64).tolist() == a.astype(np.float64).tolist()


def test_dlpack_device_is_cpu():
    device = et.Tensor([1.0, 2.0]).__dlpack_device__()
    assert tuple(device) == (1, 0)  # (kDLCPU, 0)
    assert int(device[0]) == 1


def test_dunder_dlpack_gives_a_capsule_torch_can_read():
    t = et.Tensor([[1, 2], [3, 4]], dtype=et.DType.I32)
    capsule = t.__dlpack__()
    assert torch.utils.dlpack.from_dlpack(capsule).tolist() == [[1, 2], [3, 4]]


def test_to_dtype_returns_a_new_cast_tensor():
    t = et.Tensor([1.5, -2.5, 3.0])
    for spelling in (et.DType.F64, "float64", np.float64, torch.float64):
        u = t.to(dtype=spelling)
        assert u is not t
        assert u.dtype is et.DType.F64
        assert u.tolist() == [1.5, -2.5, 3.0]
        assert u.device == et.Device.CPU
    i = t.to(dtype=et.DType.I64)
    assert i.dtype is et.DType.I64
    assert i.tolist() == torch.tensor([1.5, -2.5, 3.0]).to(torch.int64).tolist()
    b = t.to(dtype=et.DType.BF16)
    assert b.dtype is et.DType.BF16 and b.tolist() == [1.5, -2.5, 3.0]
    # The source is unchanged.
    assert t.dtype is et.DType.F32
    assert t.tolist() == [1.5, -2.5, 3.0]


def test_to_device_cpu():
    t = et.Tensor([1, 2])
    u = t.to(device="cpu")
    assert u is not t
    assert u.device == et.Device.CPU
    assert u.dtype is et.DType.I64
    assert u.tolist() == [1, 2]
    assert t.to(et.Device.CPU, et.DType.F16).dtype is et.DType.F16


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_to_without_arguments_is_a_copy(dtype):
    a = sample(dtype)
    t = et.Tensor(a)
    u = t.to()
    assert u is not t
    assert u.dtype is dtype
    assert u.device == t.device
    assert same(u.numpy(), a)
    assert not np.shares_memory(np.asarray(u), np.asarray(t))


def test_tolist_gives_python_scalars():
    ints = et.Tensor([[1, 2], [3, 4]]).tolist()
    assert ints == [[1, 2], [3, 4]]
    assert all(type(x) is int for row in ints for x in row)
    floats = et.Tensor([[0.5], [1.5]]).tolist()
    assert floats == [[0.5], [1.5]]
    assert all(type(x) is float for row in floats for x in row)
    bools = et.Tensor([True, False]).tolist()
    assert bools == [True, False] and all(type(x) is bool for x in bools)
    assert et.Tensor(4).tolist() == 4
    assert et.Tensor(np.zeros((2, 0))).tolist() == [[], []]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_tolist_of_float_dtypes_gives_python_floats(dtype):
    values = et.Tensor([0.5, -1.25], dtype=dtype).tolist()
    assert values == [0.5, -1.25]
    assert all(type(v) is float for v in values)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_item_types(dtype):
    t = et.Tensor(np.ones((1, 1), dtype=NUMPY_OF[dtype]))
    value = t.item()
    if dtype is et.DType.BOOL:
        assert value is True
    elif dtype in FLOAT_DTYPES:
        assert type(value) is float and value == 1.0
    else:
        assert type(value) is int and value == 1


@pytest.mark.parametrize("data", [[1, 2], [[1.0], [2.0]], []])
def test_item_on_not_one_element_is_shape_error(data):
    with pytest.raises(et.ShapeError):
        et.Tensor(data).item()


# --- requires_grad / detach / repr -------------------------------------------------------


@pytest.mark.parametrize("dtype", NON_FLOAT_DTYPES, ids=str)
def test_requires_grad_on_non_float_is_dtype_error(dtype):
    with pytest.raises(et.DTypeError):
        et.Tensor([1, 0], dtype=dtype, requires_grad=True)
    t = et.Tensor([1, 0], dtype=dtype)
    with pytest.raises(et.DTypeError):
        t.requires_grad = True
    assert t.requires_grad is False


def test_requires_grad_on_int_list_is_dtype_error():
    with pytest.raises(et.DTypeError):
        et.Tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(et.DTypeError):
        et.Tensor.new([1, 2, 3], requires_grad=True)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_requires_grad_on_float_tensor(dtype):
    t = et.Tensor([1.0], dtype=dtype, requires_grad=True)
    assert t.requires_grad is True
    assert t.grad is None
    t.requires_grad = False
    assert t.requires_grad is False
    t.requires_grad = True
    assert t.requires_grad is True


def test_detach():
    t = et.Tensor([[1.0, 2.0]], requires_grad=True)
    d = t.detach()
    assert isinstance(d, et.Tensor)
    assert d.requires_grad is False
    assert d.grad is None
    assert t.requires_grad is True
    assert d.shape == (1, 2)
    assert d.dtype is et.DType.F32
    assert d.device == t.device
    assert d.tolist() == [[1.0, 2.0]]


def test_repr():
    r = repr(et.Tensor([1, 2, 3]))
    assert r.startswith("Tensor(")
    assert "1" in r and "2" in r and "3" in r
    assert "I64" in r or "int64" in r
    f = repr(et.Tensor([0.5, -1.5], requires_grad=True))
    assert "0.5" in f and "-1.5" in f
    assert "requires_grad=True" in f
    assert "requires_grad" not in repr(et.Tensor([0.5]))
    b = repr(et.Tensor([1.5], dtype=et.DType.BF16))
    assert "1.5" in b and ("BF16" in b or "bfloat16" in b)
    assert repr(et.Tensor(3)).startswith("Tensor(")
    # Large tensors are summarised, not printed in full.
    assert len(repr(et.Tensor(np.arange(100_000)))) < 2_000


# --- properties --------------------------------------------------------------------------

HYPOTHESIS_DTYPES = [np.dtype(t) for t in (
    np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
    np.int64, np.float16, np.float32, np.float64)]


@st.composite
def arrays(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    use_bf16 = draw(st.booleans()) and draw(st.booleans())
    if use_bf16:
        # bfloat16 bit patterns, NaNs and infinities included.
        bits = draw(hnp.arrays(np.uint16, shape))
        return bits.view(BF16)
    dtype = draw(st.sampled_from(HYPOTHESIS_DTYPES))
    return draw(hnp.arrays(dtype, shape))


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_numpy_round_trip_is_exact(a):
    t = et.Tensor(a)
    out = t.numpy()
    assert out.dtype == a.dtype
    assert out.shape == a.shape
    assert t.shape == a.shape
    assert t.numel() == a.size
    assert t.ndim == a.ndim
    assert same(out, a)  # bit-exact: NaN payloads and -0.0 kept
    flat = t.reshape(-1)
    assert flat.shape == (a.size,)
    assert same(flat.numpy(), a.reshape(-1))
    back = flat.reshape(a.shape)
    assert back.shape == a.shape
    assert same(back.numpy(), a)
    assert same(et.Tensor(t).numpy(), a)


@settings(max_examples=60, deadline=None)
@given(arrays())
def test_torch_round_trip_is_exact(a):
    if a.dtype == BF16:
        src = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    else:
        src = torch.from_numpy(a.copy())
    t = et.Tensor(src)
    assert t.shape == a.shape
    assert same(t.numpy(), a)


def test_lower_case_dtype_names_are_numpys():
    assert et.Tensor([300], dtype="i8").dtype is et.DType.I64  # NumPy's "i8" is int64
    assert et.Tensor([3], dtype="I8").dtype is et.DType.I8


def test_python_ints_that_do_not_fit_i64_are_refused():
    with pytest.raises(et.DTypeError, match="I64"):
        et.Tensor([2**63])


def test_a_list_of_tensors_stacks():
    stacked = et.Tensor([et.Tensor(1.0), et.Tensor(2.0)])
    assert stacked.tolist() == [1.0, 2.0] and stacked.dtype is et.DType.F32
    mixed = et.Tensor([np.zeros(2), et.Tensor([1.0, 2.0], dtype="F64")])
    assert mixed.shape == (2, 2) and mixed.dtype is et.DType.F64  # the arrays' dtype, as torch
    with pytest.raises(et.ShapeError, match="shapes"):
        et.Tensor([et.Tensor([1.0]), et.Tensor([1.0, 2.0])])
