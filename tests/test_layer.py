"""The Layer protocol, Linear, state dicts and safetensors checkpoints."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as numpy_save_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import embtable as et
from embtable.nn import Embedding, Layer, Linear


class Tower(Layer):
    """A small model: two embeddings and a stack of linears."""

    def __init__(self):
        self.words = Embedding(20, 4)
        self.stack = [Linear(4, 3), Linear(3, 2, bias=False)]
        self.scale = et.Tensor([1.0], requires_grad=True)

    def forward(self, indices):
        out = self.words(indices)
        for layer in self.stack:
            out = layer(out)
        return out


def test_named_parameters_are_nested_and_dotted():
    tower = Tower()
    names = [name for name, _ in tower.named_parameters()]
    assert names == ["scale", "words.weight", "stack.0.weight", "stack.0.bias", "stack.1.weight"]
    assert tower.parameters()[1] is tower.words.weight
    assert tower.parameters() == [t for _, t in tower.named_parameters()]


def test_train_eval_reaches_children():
    tower = Tower()
    assert tower.training and tower.stack[1].training
    assert tower.eval() is tower
    assert tower.state is et.LayerState.EVAL
    assert not tower.words.training and tower.stack[0].state is et.LayerState.EVAL
    tower.train()
    assert tower.words.state is et.LayerState.TRAINING and tower.stack[1].training
    tower.train(False)
    assert not tower.stack[1].training


def test_zero_grad_clears_every_gradient():
    tower = Tower()
    for tensor in tower.parameters():
        tensor.grad = et.Tensor(np.ones(tensor.shape, dtype=np.float32))
    tower.zero_grad()
    assert all(tensor.grad is None for tensor in tower.parameters())


def test_to_dtype_keeps_parameter_objects():
    tower = Tower()
    weight = tower.words.weight
    before = weight.numpy()
    assert tower.to(dtype=et.DType.F64) is tower
    assert tower.words.weight is weight and weight.dtype is et.DType.F64
    assert all(t.dtype is et.DType.F64 for t in tower.parameters())
    np.testing.assert_array_equal(weight.numpy(), before.astype(np.float64))
    assert tower(np.array([1, 2])).dtype is et.DType.F64


def test_to_unavailable_device_changes_nothing():
    tower = Tower()
    before = {name: t.numpy() for name, t in tower.named_parameters()}
    with pytest.raises(et.DeviceError, match="cuda:0"):
        tower.to("cuda:0", dtype=et.DType.F64)
    for name, tensor in tower.named_parameters():
        assert tensor.dtype is et.DType.F32 and tensor.device == et.Device.CPU
        assert np.array_equal(tensor.numpy(), before[name])


def test_to_rejects_integer_dtype():
    with pytest.raises(et.DTypeError):
        Tower().to(dtype=et.DType.I32)


# --- Linear ---------------------------------------------------------------------------------

def test_linear_matches_torch(rng):
    layer = Linear(5, 3, dtype=et.DType.F64)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    reference = torch.nn.Linear(5, 3, dtype=torch.float64)
    reference.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((2, 4, 5))
    out = layer(et.Tensor(x))
    np.testing.assert_allclose(out.numpy(), reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)
    bound = 1 / math.sqrt(5)
    big = Linear(5, 400)
    assert np.abs(big.weight.numpy()).max() <= bound and np.abs(big.weight.numpy()).max() > 0.9 * bound


def test_linear_without_bias_and_bad_input():
    layer = Linear(4, 2, bias=False)
    assert layer.bias is None and layer.parameters() == [layer.weight]
    assert repr(layer) == "Linear(4, 2, bias=False)"
    with pytest.raises(et.ShapeError, match="last dimension must be 4"):
        layer(et.Tensor(np.ones((2, 3), dtype=np.float32)))
    with pytest.raises(et.DTypeError):
        layer(et.Tensor(np.ones((2, 4), dtype=np.float64)))
    with pytest.raises(et.InvalidArgumentError):
        Linear(0, 2)


# --- state dicts ----------------------------------------------------------------------------

def test_embedding_state_dict_has_exactly_weight():
    emb = Embedding(6, 3)
    state = emb.state_dict()
    assert list(state) == ["weight"]
    assert np.array_equal(state["weight"].numpy(), emb.weight.numpy())


def test_torch_state_dict_loads_and_goes_back(rng):
    reference = torch.nn.Embedding(12, 5, padding_idx=2)
    emb = Embedding(12, 5, padding_idx=2)
    emb.load_state_dict(reference.state_dict())
    assert np.array_equal(emb.weight.numpy(), reference.weight.detach().numpy())
    back = torch.nn.Embedding(12, 5)
    back.load_state_dict({k: torch.from_dlpack(v) for k, v in emb.state_dict().items()})
    assert torch.equal(back.weight, reference.weight)
    indices = rng.integers(0, 12, size=(3, 3))
    assert np.array_equal(emb(indices).numpy(), back(torch.from_numpy(indices)).detach().numpy())


def test_load_state_dict_accepts_numpy_and_casts_to_parameter_dtype():
    emb = Embedding(3, 2, dtype=et.DType.BF16)
    emb.load_state_dict({"weight": np.arange(6, dtype=np.float64).reshape(3, 2)})
    assert emb.weight.dtype is et.DType.BF16
    assert np.array_equal(emb.weight.numpy().astype(np.float64), np.arange(6).reshape(3, 2))


@pytest.mark.parametrize("state, error, words", [
    ({"weight": np.zeros((4, 3))}, et.ShapeError, r"\(4, 3\)"),
    ({}, et.InvalidArgumentError, "missing keys \\['weight'\\]"),
    ({"weight": np.zeros((3, 3)), "bias": np.zeros(3)}, et.InvalidArgumentError, "unexpected keys \\['bias'\\]"),
])
def test_bad_state_dict_changes_nothing(state, error, words):
    emb = Embedding(3, 3)
    before = emb.weight.numpy()
    with pytest.raises(error, match=words):
        emb.load_state_dict(state)
    assert emb.weight.numpy().tobytes() == before.tobytes()


def test_bad_state_dict_for_nested_layer_changes_nothing():
    tower = Tower()
    state = {name: np.zeros(t.shape) for name, t in tower.named_parameters()}
    state["stack.1.weight"] = np.zeros((5, 5))
    before = {name: t.numpy() for name, t in tower.named_parameters()}
    with pytest.raises(et.ShapeError, match="stack.1.weight"):
        tower.load_state_dict(state)
    assert all(np.array_equal(t.numpy(), before[n]) for n, t in tower.named_parameters())


# --- save / load ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64, et.DType.F16, et.DType.BF16])
def test_embedding_save_load_round_trip(tmp_path, dtype):
    emb = Embedding(30, 6, padding_idx=-1, max_norm=2.0, norm_type=math.inf, scale_grad_by_freq=True,
                    dtype=dtype, sparse=True, max_norm_mode="clip")
    path = tmp_path / "emb.safetensors"
    emb.save(path)
    loaded = Embedding.load(path)
    assert repr(loaded) == repr(emb)
    assert loaded.padding_idx == 29 and loaded.norm_type == math.inf and loaded.max_norm_mode == "clip"
    assert loaded.weight.dtype is dtype and loaded.weight.requires_grad
    assert loaded.weight.numpy().tobytes() == emb.weight.numpy().tobytes()


def test_frozen_table_loads_frozen(tmp_path):
    emb = Embedding.from_pretrained(np.eye(3, dtype=np.float32), freeze=True)
    emb.save(tmp_path / "frozen.safetensors")
    assert Embedding.load(tmp_path / "frozen.safetensors").weight.requires_grad is False


def test_linear_save_load_round_trip(tmp_path):
    layer = Linear(3, 2, dtype=et.DType.F64)
    layer.save(tmp_path / "linear.safetensors")
    loaded = Linear.load(tmp_path / "linear.safetensors")
    assert repr(loaded) == repr(layer) and loaded.weight.dtype is et.DType.F64
    assert np.array_equal(loaded.bias.numpy(), layer.bias.numpy())


def test_checkpoint_is_a_standard_safetensors_file(tmp_path):
    emb = Embedding(4, 2, dtype=et.DType.BF16)
    emb.save(tmp_path / "e.safetensors")
    tensors = torch_load_file(tmp_path / "e.safetensors")
    assert tensors["weight"].dtype == torch.bfloat16
    assert np.array_equal(tensors["weight"].view(torch.int16).numpy(),
                          emb.weight.numpy().view(np.int16))


def test_loads_weights_written_by_torch(tmp_path):
    weight = torch.randn(5, 3, dtype=torch.bfloat16)
    config = {"num_embeddings": 5, "embedding_dim": 3, "padding_idx": 0}
    torch_save_file({"weight": weight}, tmp_path / "t.safetensors",
                    metadata={"embtable.layer": "Embedding", "embtable.config": json.dumps(config)})
    emb = Embedding.load(tmp_path / "t.safetensors")
    assert emb.padding_idx == 0 and emb.weight.dtype is et.DType.BF16
    assert np.array_equal(emb.weight.numpy().view(np.int16), weight.view(torch.int16).numpy())


def corrupt_files(tmp_path):
    good = tmp_path / "good.safetensors"
    Embedding(4, 2).save(good)
    data = good.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    cases = {
        "empty": b"",
        "garbage": b"this is not a checkpoint at all",
        "truncated": data[:-5],
        "huge header length": (10**12).to_bytes(8, "little") + data[8:],
        "broken json": data[:8] + b"[" + data[9:],
        "header not an object": len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]",
        "unknown dtype": data.replace(b'"F32"', b'"X32"'),
        "wrong size": data[:8 + header_length].replace(b'"shape":[4,2]', b'"shape":[4,3]') + data[8 + header_length:],
    }
    paths = []
    for name, content in cases.items():
        path = tmp_path / (name.replace(" ", "_") + ".safetensors")
        path.write_bytes(content)
        paths.append(path)
    plain = tmp_path / "plain.safetensors"
    numpy_save_file({"weight": np.zeros((4, 2), np.float32)}, plain)  # no embtable metadata
    wrong_kind = tmp_path / "linear.safetensors"
    Linear(2, 2).save(wrong_kind)
    bad_config = tmp_path / "bad_config.safetensors"
    numpy_save_file({"weight": np.zeros((4, 2), np.float32)}, bad_config,
                    metadata={"embtable.layer": "Embedding", "embtable.config": '{"num_embeddings": 4}'})
    return paths + [plain, wrong_kind, bad_config]


def test_corrupt_files_raise_serialization_error(tmp_path):
    files = corrupt_files(tmp_path)
    assert len(files) == 11
    for path in files:
        with pytest.raises(et.SerializationError, match=path.name):
            Embedding.load(path)


def test_failed_save_leaves_existing_file(tmp_path):
    path = tmp_path / "emb.safetensors"
    emb = Embedding(4, 2)
    emb.save(path)
    before = path.read_bytes()
    with pytest.raises(NotImplementedError):
        Tower().save(path)  # Tower has no config: nothing is written
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.safetensors"]


def test_to_converts_gradients_and_bumps_versions():
    emb = Embedding(5, 2, sparse=True)
    emb([1, 3]).sum().backward()
    dense = Linear(2, 2)
    dense(et.Tensor(np.ones((1, 2), np.float32))).sum().backward()
    version = emb.weight._version
    emb.to(dtype=et.DType.F64)
    dense.to(dtype=et.DType.F64)
    assert emb.weight.grad.dtype is et.DType.F64 and emb.weight.grad.indices.tolist() == [1, 3]
    assert dense.weight.grad.dtype is et.DType.F64 and dense.bias.grad.dtype is et.DType.F64
    assert emb.weight._version == version + 1


def test_tied_and_integer_tensors():
    class Tied(Layer):
        def __init__(self):
            self.embedding = Embedding(5, 3)
            self.output = Linear(3, 5, bias=False)
            self.output.weight = self.embedding.weight
            self.vocabulary = et.Tensor([1, 2, 3])  # an integer constant, not a parameter

    tied = Tied()
    assert [name for name, _ in tied.named_parameters()] == ["embedding.weight"]
    et.optim.SGD(tied.parameters(), lr=0.1)  # no duplicate
    tied.to(dtype=et.DType.F64)
    assert tied.vocabulary.dtype is et.DType.I64


def test_load_does_not_consume_the_generator(tmp_path):
    Linear(3, 2).save(tmp_path / "l.safetensors")
    et.manual_seed(0)
    Linear.load(tmp_path / "l.safetensors")
    after_load = Embedding(3, 2).weight.numpy()
    et.manual_seed(0)
    assert np.array_equal(after_load, Embedding(3, 2).weight.numpy())


def test_saved_files_have_ordinary_permissions(tmp_path):
    import os

    Embedding(2, 2).save(tmp_path / "e.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "e.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_load_state_dict_needs_a_mapping():
    with pytest.raises(et.InvalidArgumentError):
        Embedding(2, 2).load_state_dict([np.zeros((2, 2))])


# --- what a layer holds: parameters, buffers, children ------------------------------------------

class Normalised(Layer):
    """A layer with a float buffer, an integer buffer, a cached result and a dict of children."""

    def __init__(self):
        self.scale = et.Tensor([2.0], requires_grad=True)
        self.register_buffer("running_mean", et.Tensor(np.zeros(3, np.float32)))
        self.register_buffer("codes", et.Tensor(np.arange(4, dtype=np.int8)))
        self.towers = {"user": Linear(3, 2), "item": Linear(3, 2, bias=False)}
        self.constant = et.Tensor([1.0, 1.0, 1.0])  # no grad: an ordinary attribute
        self.last = None

    def forward(self, x):
        self.last = self.towers["user"](x * self.scale)  # computed, so not a parameter
        return self.last

    def config(self):
        return {}


def test_parameters_are_what_trains_and_buffers_are_registered():
    layer = Normalised()
    layer(et.Tensor(np.ones((1, 3), np.float32)))
    assert [n for n, _ in layer.named_parameters()] == ["scale", "towers.user.weight", "towers.user.bias",
                                                        "towers.item.weight"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "codes"]
    assert [n for n, _ in layer.named_children()] == ["towers.user", "towers.item"]
    assert list(layer.state_dict()) == ["scale", "towers.user.weight", "towers.user.bias", "towers.item.weight",
                                        "running_mean", "codes"]
    assert layer.buffers()[1].dtype is et.DType.I8


def test_a_frozen_or_replaced_parameter_stays_one():
    layer = Linear(2, 2)
    layer.weight.requires_grad = False
    layer.bias = et.Tensor([0.5, 0.5])  # a plain tensor into a parameter's slot
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    layer.register_parameter("extra", et.Tensor([1.0]))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "extra"]
    layer.bias = 3  # not a tensor: no longer a parameter
    del layer.extra
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_a_buffer_holds_only_tensors():
    layer = Normalised()
    with pytest.raises(et.InvalidArgumentError, match="running_mean"):
        layer.running_mean = [0.0, 0.0, 0.0]
    with pytest.raises(et.InvalidArgumentError, match="buffer 'x'"):
        layer.register_buffer("x", np.zeros(2))


def test_buffers_are_saved_loaded_and_moved(tmp_path):
    layer = Normalised()
    layer.load_state_dict({**{n: t.numpy() for n, t in layer.state_dict().items()},
                           "running_mean": np.array([1.0, 2.0, 3.0]), "codes": np.array([4, 3, 2, 1])})
    assert layer.running_mean.tolist() == [1.0, 2.0, 3.0] and layer.codes.dtype is et.DType.I8
    assert layer.codes.tolist() == [4, 3, 2, 1]
    path = tmp_path / "n.safetensors"
    layer.save(path)
    loaded = Normalised.load(path)
    assert list(loaded.state_dict()) == list(layer.state_dict())
    for (name, ours), (_, theirs) in zip(layer.state_dict().items(), loaded.state_dict().items()):
        assert ours.dtype is theirs.dtype and ours.numpy().tobytes() == theirs.numpy().tobytes(), name
    layer.to(dtype=et.DType.F64)
    assert layer.running_mean.dtype is et.DType.F64 and layer.codes.dtype is et.DType.I8
    assert layer.scale.dtype is et.DType.F64
