"""Issue #17, hardening, each against PyTorch (or NumPy 2) as the oracle: values that an
integer dtype cannot hold are refused when a tensor is built from data, while explicit casts
wrap as PyTorch's do; ops give IEEE results (inf, nan) without leaking NumPy's warnings; a
tied weight is in the state dict under each of its names and survives checkpoints, old
ones included; `Linear` and the losses take arrays and lists."""

import re
import warnings

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import embtable as et
from embtable.nn import Embedding, Layer, Linear
from embtable.nn import functional as F

INTEGERS = [et.DType.U8, et.DType.U16, et.DType.U32, et.DType.U64,
            et.DType.I8, et.DType.I16, et.DType.I32, et.DType.I64]
TORCH = {et.DType.U8: torch.uint8, et.DType.U16: torch.uint16, et.DType.U32: torch.uint32,
         et.DType.U64: torch.uint64, et.DType.I8: torch.int8, et.DType.I16: torch.int16,
         et.DType.I32: torch.int32, et.DType.I64: torch.int64, et.DType.F16: torch.float16,
         et.DType.BF16: torch.bfloat16,
         et.DType.F32: torch.float32, et.DType.F64: torch.float64}


def refuses(build):
    """Whether the oracle `build()` refuses (PyTorch and NumPy raise their own kinds)."""
    try:
        build()
    except (RuntimeError, OverflowError, ValueError, TypeError):
        return True
    return False


# --- 1. values that do not fit an integer dtype ---------------------------------------------

@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
def test_python_ints_beyond_the_range_are_refused_naming_value_and_range(dtype):
    info = np.iinfo(dtype.numpy)
    for value in (info.min - 1, info.max + 1):
        assert refuses(lambda: np.array([value], dtype.numpy))  # NumPy 2 refuses every one
        with pytest.raises(et.InvalidArgumentError) as raised:
            et.Tensor([1, value], dtype=dtype)
        assert all(str(n) in str(raised.value) for n in (value, info.min, info.max, dtype.name))
        assert "(1,)" in str(raised.value)  # the position
        with pytest.raises(et.InvalidArgumentError, match=str(value)):
            et.Tensor(value, dtype=dtype)
    # PyTorch refuses the values above the range too (below it, it wraps into unsigned types)
    assert refuses(lambda: torch.tensor([info.max + 1], dtype=TORCH[dtype]))
    # ... and takes the boundaries, as embtable does
    edges = [info.min, info.max]
    assert et.Tensor(edges, dtype=dtype).tolist() == torch.tensor(edges, dtype=TORCH[dtype]).tolist()


@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
def test_arrays_of_a_wider_type_are_checked_value_by_value(dtype):
    info = np.iinfo(dtype.numpy)
    inside = np.array([[info.min, 0], [info.max, 1]], dtype=object)
    wide = np.uint64 if dtype is et.DType.U64 else np.int64
    fits = inside.astype(wide) if info.max <= np.iinfo(wide).max else None
    if fits is not None:
        t = et.Tensor(fits, dtype=dtype)
        assert t.tolist() == torch.from_numpy(fits).to(TORCH[dtype]).tolist()
    if dtype in (et.DType.U64, et.DType.I64):
        return  # no NumPy integer type is wider
    beyond = np.array([[0, 1], [2, info.max + 1]], np.int64)
    with pytest.raises(et.InvalidArgumentError, match=rf"{info.max + 1} at position \(1, 1\)"):
        et.Tensor(beyond, dtype=dtype)
    with pytest.raises(et.InvalidArgumentError, match=str(info.min - 1)):
        et.Tensor(torch.tensor([info.min - 1]), dtype=dtype)  # any array object: DLPack too


@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
def test_floats_outside_the_range_nan_and_inf_are_refused_as_pytorch_refuses_them(dtype):
    info = np.iinfo(dtype.numpy)
    too_large = float(info.max) * 2
    for value in (too_large, -too_large - 2, float("nan"), float("inf"), float("-inf")):
        assert refuses(lambda: torch.tensor([value], dtype=TORCH[dtype]))
        with pytest.raises(et.InvalidArgumentError, match=re.escape(repr(value)) + f".*{dtype.name}"):
            et.Tensor([0.0, value], dtype=dtype)
        with pytest.raises(et.InvalidArgumentError):
            et.Tensor(np.array([value], np.float32), dtype=dtype)  # from a NumPy float array too


@pytest.mark.parametrize("dtype", [et.DType.I8, et.DType.U8, et.DType.I16, et.DType.U16, et.DType.I32],
                         ids=str)
def test_floats_inside_the_range_truncate_toward_zero_and_fractions_past_it_do_not_fit(dtype):
    info = np.iinfo(dtype.numpy)
    values = [1.5, 0.9, info.max - 0.5, 2.99] + ([-1.5, info.min + 0.5] if info.min else [])
    assert et.Tensor(values, dtype=dtype).tolist() == torch.tensor(values, dtype=TORCH[dtype]).tolist()
    past = info.max + 0.5  # truncates to max, but is beyond it: PyTorch refuses it
    assert refuses(lambda: torch.tensor([past], dtype=TORCH[dtype]))
    with pytest.raises(et.InvalidArgumentError, match=re.escape(str(past))):
        et.Tensor([past], dtype=dtype)


def test_the_largest_int64_is_exact_where_floats_round():
    """float(2**63 - 1) is 2**63: the float check must not let it through (PyTorch does,
    wrapping to the minimum); the largest float below it fits."""
    with pytest.raises(et.InvalidArgumentError):
        et.Tensor([2.0**63], dtype=et.DType.I64)
    below = np.nextafter(2.0**63, 0)
    assert et.Tensor([below], dtype=et.DType.I64).tolist() == [int(below)]
    with pytest.raises(et.InvalidArgumentError):
        et.Tensor([2.0**64], dtype=et.DType.U64)


def test_in_place_writes_of_data_are_checked_and_a_refusal_changes_nothing():
    t = et.Tensor([1, 2, 3], dtype=et.DType.I8)
    theirs = torch.tensor([1, 2, 3], dtype=torch.int8)
    assert refuses(lambda: theirs.fill_(300)) and refuses(lambda: theirs.__setitem__(0, 300))
    for write in (lambda: t.fill_(300), lambda: t.__setitem__(0, 300),
                  lambda: t.__setitem__(slice(None), np.array([1, 2, 128])),
                  lambda: t.copy_([1.0, float("nan"), 3.0])):
        with pytest.raises(et.InvalidArgumentError):
            write()
        assert t.tolist() == [1, 2, 3] and t._version == 0


@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
def test_explicit_casts_wrap_as_pytorchs_do(dtype):
    """`to` (and the cast methods, and a tensor given to the constructor) is the unchecked
    cast: integers wrap around, as ``torch.Tensor.to`` and ``torch.tensor(tensor, dtype=)``."""
    values = [200, -129, 255, 256, 65537, -1, 2**40 + 3, -(2**40) - 5]
    source, theirs = et.Tensor(values), torch.tensor(values)
    expected = theirs.to(TORCH[dtype]).tolist()
    assert source.to(dtype=dtype).tolist() == expected
    assert et.Tensor(source, dtype=dtype).tolist() == expected
    assert source.int().tolist() == theirs.int().tolist()
    floats = [1.5, -2.7, 100.9, 0.2]
    if not dtype.name.startswith("U"):
        assert et.Tensor(floats).to(dtype=dtype).tolist() == torch.tensor(floats).to(TORCH[dtype]).tolist()


def test_a_cast_of_nan_and_inf_into_integers_neither_raises_nor_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in INTEGERS:
            cast = et.Tensor([float("nan"), float("inf"), 1e30, 2.0]).to(dtype=dtype)
            assert cast.dtype is dtype and cast.tolist()[3] == 2


def test_scalar_operands_of_integer_arithmetic_wrap_as_pytorchs():
    ours, theirs = et.Tensor([1, -3, 100], dtype=et.DType.I8), torch.tensor([1, -3, 100], dtype=torch.int8)
    assert (ours + 200).tolist() == (theirs + 200).tolist()
    assert (ours * 1000).tolist() == (theirs * 1000).tolist()
    assert (ours == 200).tolist() == (theirs == 200).tolist()
    assert (ours + 2.5).tolist() == pytest.approx((theirs + 2.5).tolist())  # a float promotes


def test_floats_beyond_a_float_dtype_become_infinite_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (et.DType.F16, et.DType.F32):
            values = [1e40, -1e40, 1.0]
            assert et.Tensor(values, dtype=dtype).tolist() == torch.tensor(values, dtype=TORCH[dtype]).tolist()


# --- 2. IEEE results without NumPy's warnings ---------------------------------------------

INF, NAN = float("inf"), float("nan")

#: name -> (the op over embtable or torch tensors, its float32 inputs)
OPS = {
    "log": (lambda x: x.log(), [[0.0, -1.0, 1.0, INF]]),
    "divide": (lambda x, y: x / y, [[1.0, 0.0, -1.0, INF], [0.0, 0.0, 0.0, INF]]),
    "divide a scalar": (lambda x: 1.0 / x, [[0.0, -0.0, 2.0]]),
    "exp": (lambda x: x.exp(), [[1000.0, -1000.0, NAN]]),
    "sqrt": (lambda x: x.sqrt(), [[-1.0, 0.0, 4.0]]),
    "power": (lambda x, y: x ** y, [[0.5, 2.0, 5.0], [-200.0, 200.0, 0.0]]),  # x > 0: below, embtable takes
    # the exponent's gradient as 0 (its documented choice), where PyTorch gives nan or -inf
    "root of a negative": (lambda x: x ** 0.5, [[-1.0, 0.0, 4.0]]),
    "reciprocal": (lambda x: x ** -1.0, [[0.0, -0.0, 2.0]]),
    "multiply": (lambda x: x * 10, [[3e38, -3e38, INF]]),
    "inf times zero": (lambda x, y: x * y, [[INF, -INF], [0.0, 0.0]]),
    "add": (lambda x, y: x + y, [[INF, 3e38], [-INF, 3e38]]),
    "sum": (lambda x: x.sum(), [[3e38, 3e38, 1.0]]),
    "mean": (lambda x: x.mean(), [[3e38, 3e38]]),
    "norm": (lambda x: x.norm(), [[3e38, 3e38]]),
    "matmul": (lambda x, y: x.reshape(1, 2) @ y.reshape(2, 1), [[3e38, 3e38], [3e38, 3e38]]),
    "softmax": (lambda x: x.softmax(0), [[INF, 1.0, -INF]]),
    "log_softmax": (lambda x: F.log_softmax(x.reshape(1, 3), dim=1), [[INF, 1.0, -INF]]),
    "cross_entropy": (lambda x: F.cross_entropy(x.reshape(2, 2), [1, 0]), [[INF, -INF, INF, INF]]),
    "bce": (lambda x, y: F.binary_cross_entropy_with_logits(x, y), [[INF, -INF], [0.0, 1.0]]),
    "mse": (lambda x, y: F.mse_loss(x, y), [[3e38, 1.0], [-3e38, 1.0]]),
    "half": (lambda x: x.half(), [[1e6, -1e6, 1.0]]),
}


def _torch_op(name):
    """The op as PyTorch names it (where embtable's own name differs)."""
    op, _ = OPS[name]
    torch_names = {"cross_entropy": lambda x: torch.nn.functional.cross_entropy(x.reshape(2, 2), torch.tensor([1, 0])),
                   "log_softmax": lambda x: torch.log_softmax(x.reshape(1, 3), dim=1),
                   "bce": torch.nn.functional.binary_cross_entropy_with_logits,
                   "mse": torch.nn.functional.mse_loss}
    return torch_names.get(name, op)


@pytest.mark.parametrize("name", list(OPS))
def test_ops_give_pytorchs_ieee_results_and_their_gradients_without_warnings(name):
    op, inputs = OPS[name]
    ours = [et.Tensor(np.array(v, np.float32), requires_grad=True) for v in inputs]
    theirs = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any NumPy RuntimeWarning fails the test
        out = op(*ours)
        expected = _torch_op(name)(*theirs)
        np.testing.assert_allclose(out.numpy().astype(np.float64), expected.detach().double().numpy(), rtol=1e-6)
        upstream = np.ones(out.shape, np.float32)
        out.backward(upstream)
    expected.backward(torch.ones(expected.shape, dtype=expected.dtype))
    for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), their.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16], ids=str)
def test_renorming_an_infinite_half_precision_row_gives_pytorchs_nan_without_warnings(dtype):
    weight = np.ones((3, 2), np.float32)
    weight[1], weight[2, 0] = INF, NAN
    ours = Embedding.from_pretrained(weight, dtype=dtype, max_norm=1.0)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(weight).to(TORCH[dtype]),
                                                max_norm=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ours([0, 1, 2])
    expected = theirs(torch.tensor([0, 1, 2])).float().numpy()
    np.testing.assert_array_equal(out.numpy().astype(np.float32), expected)
    np.testing.assert_array_equal(ours.weight.numpy().astype(np.float32), theirs.weight.float().numpy())


def test_the_callers_own_numpy_settings_are_left_as_they_were():
    et.Tensor([0.0]).log()
    with pytest.warns(RuntimeWarning):
        np.log(np.zeros(1))


# --- 3. tied weights ------------------------------------------------------------------------

class TiedLM(Layer):
    """An embedding and an output layer that shares its table."""

    def __init__(self, vocabulary, dim):
        self.embedding = Embedding(vocabulary, dim)
        self.output = Linear(dim, vocabulary)
        self.output.weight = self.embedding.weight

    def forward(self, ids):
        return self.output(self.embedding(ids))

    def config(self):
        return {"vocabulary": self.embedding.num_embeddings, "dim": self.embedding.embedding_dim}


class TorchTiedLM(torch.nn.Module):
    def __init__(self, vocabulary, dim):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary, dim)
        self.output = torch.nn.Linear(dim, vocabulary)
        self.output.weight = self.embedding.weight


def test_a_tied_weight_is_in_the_state_dict_under_every_name_as_in_pytorch():
    ours, theirs = TiedLM(7, 3), TorchTiedLM(7, 3)
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    assert np.shares_memory(np.asarray(state["output.weight"]), np.asarray(state["embedding.weight"]))
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]


def test_tied_state_dicts_load_both_ways():
    ours, theirs = TiedLM(7, 3), TorchTiedLM(7, 3)
    ours.load_state_dict(theirs.state_dict())
    assert ours.output.weight is ours.embedding.weight
    np.testing.assert_array_equal(ours.output.weight.numpy(), theirs.embedding.weight.detach().numpy())
    back = TorchTiedLM(7, 3)
    back.load_state_dict({name: torch.from_dlpack(t) for name, t in ours.state_dict().items()})
    np.testing.assert_array_equal(back.output.weight.detach().numpy(), ours.embedding.weight.numpy())


def test_a_tied_weight_given_under_one_name_only_is_refused_as_pytorch_strict_refuses():
    ours, theirs = TiedLM(7, 3), TorchTiedLM(7, 3)
    partial = {k: v for k, v in TorchTiedLM(7, 3).state_dict().items() if k != "output.weight"}
    assert refuses(lambda: theirs.load_state_dict(partial))
    before = ours.embedding.weight.numpy()
    with pytest.raises(et.InvalidArgumentError, match="'output.weight' is tied to 'embedding.weight'"):
        ours.load_state_dict(partial)
    np.testing.assert_array_equal(ours.embedding.weight.numpy(), before)


def test_two_values_for_one_tied_tensor_are_refused_and_change_nothing():
    """PyTorch copies both, the last one winning; embtable cannot keep both and refuses."""
    ours = TiedLM(7, 3)
    state = {k: v.numpy() for k, v in ours.state_dict().items()}
    before = ours.embedding.weight.numpy()
    state["output.weight"] = state["output.weight"] + 1
    state["output.bias"] = state["output.bias"] + 1
    with pytest.raises(et.InvalidArgumentError, match="embedding.weight.*output.weight"):
        ours.load_state_dict(state)
    np.testing.assert_array_equal(ours.embedding.weight.numpy(), before)
    assert not np.array_equal(ours.output.bias.numpy(), state["output.bias"])


def test_a_tied_checkpoint_stores_the_tensor_once_and_loads_tied(tmp_path):
    ours = TiedLM(7, 3)
    ours.output.bias.requires_grad = False
    ours.save(tmp_path / "lm.safetensors")
    tensors, _ = et.checkpoint.read(tmp_path / "lm.safetensors")
    assert sorted(tensors) == ["embedding.weight", "output.bias"]
    loaded = TiedLM.load(tmp_path / "lm.safetensors")
    assert loaded.output.weight is loaded.embedding.weight
    assert loaded.output.bias.requires_grad is False
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name].numpy(), value.numpy())
    optimizer = et.optim.SGD(loaded.parameters(), lr=0.1)
    loaded(np.array([1, 2])).sum().backward()
    optimizer.step()
    assert loaded.output.weight is loaded.embedding.weight  # still one tensor, trained as one


@pytest.mark.parametrize("names", [["embedding.weight", "output.bias"],
                                   ["embedding.weight", "output.weight", "output.bias"]])
def test_checkpoints_in_the_earlier_layout_and_with_every_name_load(tmp_path, names):
    """The layout written before state dicts listed tied names (one copy, under the first
    name), built here with safetensors itself, and a file holding every name."""
    rng = np.random.default_rng(0)
    table, bias = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    arrays = {"embedding.weight": table, "output.weight": table, "output.bias": bias}
    save_file({name: arrays[name] for name in names}, str(tmp_path / "old.safetensors"),
              metadata={"embtable.layer": "TiedLM", "embtable.config": '{"vocabulary": 7, "dim": 3}',
                        "embtable.frozen": "[]"})
    loaded = TiedLM.load(tmp_path / "old.safetensors")
    assert loaded.output.weight is loaded.embedding.weight
    np.testing.assert_array_equal(loaded.embedding.weight.numpy(), table)
    np.testing.assert_array_equal(loaded.output.bias.numpy(), bias)


# --- 4. Linear and the losses take arrays and lists ------------------------------------------

def _torch_linear(layer):
    theirs = torch.nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(layer.weight.numpy()))
        theirs.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    return theirs


@pytest.mark.parametrize("kind", ["list", "int list", "float64 array", "float32 array"])
def test_linear_takes_arrays_and_lists_in_its_weights_dtype(kind, rng):
    layer = Linear(3, 2)
    theirs = _torch_linear(layer)
    values = rng.integers(-3, 4, (4, 3)) if kind == "int list" else rng.standard_normal((4, 3))
    x = {"list": values.tolist(), "int list": values.tolist(), "float64 array": values,
         "float32 array": values.astype(np.float32)}[kind]
    out = layer(x)
    expected = theirs(torch.tensor(values, dtype=torch.float32))
    assert out.dtype is et.DType.F32
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_linear_errors_name_the_bad_input():
    layer = Linear(3, 2)
    with pytest.raises(et.ShapeError, match=r"\(2, 4\).*\(2, 3\)"):
        layer(np.ones((2, 4)))
    with pytest.raises(et.InvalidArgumentError, match="x must be a Tensor or an array, got str"):
        layer("abc")
    with pytest.raises(et.InvalidArgumentError, match="x must be"):
        layer([[1.0, 2.0, 3.0], [1.0]])  # ragged
    with pytest.raises(et.DTypeError, match="F64.*F32"):
        layer(et.Tensor(np.ones((2, 3))))  # a tensor keeps its dtype, as in PyTorch
    assert refuses(lambda: _torch_linear(layer)(torch.ones(2, 3, dtype=torch.float64)))


def test_cross_entropy_takes_arrays_and_lists(rng):
    logits = rng.standard_normal((4, 5))
    targets = rng.integers(0, 5, 4)
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets))
    for x, t in ((logits.tolist(), targets.tolist()), (logits.astype(np.float32), targets.astype(np.int32)),
                 (et.Tensor(logits.astype(np.float32)), targets.astype(np.uint8))):
        np.testing.assert_allclose(F.cross_entropy(x, t).item(), expected.item(), rtol=1e-6)
    ours = et.Tensor(logits, requires_grad=True)
    theirs = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(ours, targets.tolist()).backward()
    torch.nn.functional.cross_entropy(theirs, torch.tensor(targets)).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_float_targets_given_as_arrays_take_the_inputs_dtype(rng):
    logits, targets = rng.standard_normal(6).astype(np.float32), rng.random(6)
    ours_x = et.Tensor(logits, requires_grad=True)
    theirs_x = torch.tensor(logits, requires_grad=True)
    for ours_op, theirs_op in ((F.binary_cross_entropy_with_logits, torch.nn.functional.binary_cross_entropy_with_logits),
                               (F.mse_loss, torch.nn.functional.mse_loss)):
        for t in (targets, targets.tolist(), targets.astype(np.float16)):
            loss = ours_op(ours_x, t)
            expected = theirs_op(theirs_x, torch.tensor(np.asarray(t, np.float32)))
            assert loss.dtype is et.DType.F32
            np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-5)
        ours_x.grad = None
        theirs_x.grad = None
        ours_op(ours_x, targets.tolist()).backward()
        theirs_op(theirs_x, torch.tensor(targets, dtype=torch.float32)).backward()
        np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(F.mse_loss(logits.tolist(), targets).item(),
                               torch.nn.functional.mse_loss(torch.tensor(logits), torch.tensor(targets, dtype=torch.float32)).item(),
                               rtol=1e-5)


def test_loss_errors_name_the_bad_argument():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(et.DTypeError, match="targets must be integers.*F64"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    assert refuses(lambda: torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.tensor([0.5, 1.0])))
    with pytest.raises(et.ShapeError, match=r"logits \(2, 3\) and targets \(3,\)"):
        F.cross_entropy(logits, [0, 1, 2])
    with pytest.raises(et.InvalidArgumentError, match="targets must be a Tensor or an array, got NoneType"):
        F.cross_entropy(logits, None)
    with pytest.raises(et.IndexOutOfRangeError, match="target 3 at position \\(1,\\)"):
        F.cross_entropy(logits, [0, 3])
    with pytest.raises(et.InvalidArgumentError, match="targets must be a Tensor or an array, got str"):
        F.binary_cross_entropy_with_logits(logits, "x")
    with pytest.raises(et.ShapeError, match=r"a \(2, 3\) and b \(3,\)"):
        F.mse_loss(logits, [1.0, 2.0, 3.0])
    with pytest.raises(et.DTypeError, match="logits must have a float dtype, got I64"):
        F.cross_entropy([[1, 2]], [0])
