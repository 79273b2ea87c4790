"""`Tensor.to`, `Layer.to` and optimizer state across two backends, with the device label
always where the data is, and gradients flowing after the move.

CI has one device, so a second one stands in: CUDA device 0 held by a PyTorch backend of
its own whose tensors live in CPU memory (a real GPU is used where there is one). So the
moves run NumPy <-> torch-CPU by default, and torch-CPU <-> another torch backend under
EMBTABLE_CPU_BACKEND=torch.
"""

import numpy as np
import pytest
import torch

import embtable as et
from embtable import backends
from embtable.backends import backend_for
from embtable.backends.torch_backend import TorchBackend
from embtable.core import backend_of, data_of
from embtable.nn import Embedding, Layer, Linear


@pytest.fixture
def second(monkeypatch):
    """A second device, with a backend other than the CPU's."""
    device = et.Device.CUDA(0)
    if not torch.cuda.is_available():
        monkeypatch.setitem(backends._backends, device, TorchBackend(device, torch_device="cpu"))
    assert backend_for(device) is not backend_for(et.Device.CPU)
    return device


def assert_on(tensor, device):
    """The label is `device`, and the data is held by `device`'s backend."""
    assert tensor.device == device
    assert backend_of(tensor) is backend_for(device)
    assert backend_for(device).owns(data_of(tensor))


@pytest.mark.parametrize("dtype", [None, et.DType.F64, et.DType.BF16, et.DType.I32], ids=str)
def test_tensor_to_and_back(second, dtype):
    values = np.array([[1.5, -2.0], [0.25, 8.0]], np.float32)
    cpu = et.Tensor(values)
    there = cpu.to(second, dtype)
    assert_on(there, second)
    assert there.dtype is (dtype or et.DType.F32)
    np.testing.assert_array_equal(there.numpy(), values.astype((dtype or et.DType.F32).numpy))
    back = there.to(et.Device.CPU)
    assert_on(back, et.Device.CPU)
    np.testing.assert_array_equal(back.numpy(), there.numpy())
    assert_on(there.to(), second)  # None keeps the device


def test_gradients_flow_back_across_a_move(second):
    x = et.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.to(second)
    assert y.requires_grad
    (y * y).sum().backward()
    assert_on(x.grad, et.Device.CPU)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_tensors_on_two_devices_do_not_mix(second):
    a, b = et.Tensor([1.0, 2.0]), et.Tensor([1.0, 2.0], device=second)
    with pytest.raises(et.DeviceError, match="different devices"):
        a + b
    emb = Embedding(5, 2)
    with pytest.raises(et.DeviceError, match="indices are on cuda:0"):
        emb(et.Tensor([1, 2], device=second))
    with pytest.raises(et.DeviceError):
        a.grad = b


class Tower(Layer):
    def __init__(self):
        self.words = Embedding(30, 4, sparse=True, padding_idx=0)
        self.head = Linear(4, 3)
        self.register_buffer("seen", et.Tensor(np.zeros(30, np.int64)))

    def forward(self, ids):
        return self.head(self.words(ids).mean(axis=1))


def train(model, optimizer, batches):
    losses = []
    for ids, labels in batches:
        optimizer.zero_grad()
        loss = et.nn.functional.cross_entropy(model(ids), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_layer_and_optimizer_state_move_and_keep_training(second):
    """Two steps on the CPU, a move, two more steps there: the same result as four steps on
    the CPU, with every tensor, gradient and state labelled where its data is."""
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 30, (8, 5)), rng.integers(0, 3, 8)) for _ in range(4)]
    et.manual_seed(5)
    reference = Tower()
    expected = train(reference, et.optim.Adam(reference.parameters(), lr=0.1), batches)
    et.manual_seed(5)
    model = Tower()
    parameters = model.parameters()
    optimizer = et.optim.Adam(parameters, lr=0.1)
    losses = train(model, optimizer, batches[:2])
    assert model.to(second) is model
    assert model.parameters() == parameters  # the same tensor objects
    for tensor in parameters + model.buffers():
        assert_on(tensor, second)
    assert_on(model.words.weight.grad.values, second)  # the last step's gradient moved too
    assert_on(model.words.weight.grad.indices, second)
    assert_on(model.head.weight.grad, second)
    losses += train(model, optimizer, batches[2:])
    for state in optimizer.state:
        assert_on(state["exp_avg"], second)
        assert_on(state["exp_avg_sq"], second)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    for (name, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    model.to(et.Device.CPU)
    for tensor in model.parameters() + model.buffers():
        assert_on(tensor, et.Device.CPU)
    assert model.seen.dtype is et.DType.I64


def test_state_made_elsewhere_moves_to_its_parameter(second):
    p = et.Tensor(np.ones((3, 2)), requires_grad=True)
    optimizer = et.optim.SGD([p], lr=0.1, momentum=0.5)
    optimizer.state[0]["momentum_buffer"] = et.Tensor(np.full((3, 2), 2.0), device=second)
    p.grad = et.Tensor(np.ones((3, 2)))
    optimizer.step()
    np.testing.assert_allclose(p.numpy(), 1 - 0.1 * (0.5 * 2 + 1))
    assert_on(optimizer.state[0]["momentum_buffer"], et.Device.CPU)
    np.testing.assert_allclose(optimizer.state[0]["momentum_buffer"].numpy(), 2.0)


def test_a_move_with_a_cast_casts_gradients_and_state(second):
    model = Linear(3, 2)
    optimizer = et.optim.Adam(model.parameters(), lr=0.1)
    model(et.Tensor(np.ones((4, 3), np.float32))).sum().backward()
    optimizer.step()
    model.to(second, et.DType.F64)
    for tensor in model.parameters():
        assert_on(tensor, second)
        assert tensor.dtype is et.DType.F64 and tensor.grad.dtype is et.DType.F64
    model(et.Tensor(np.ones((4, 3)), device=second)).sum().backward()
    optimizer.step()
    for state in optimizer.state:
        assert_on(state["exp_avg"], second)
        assert state["exp_avg"].dtype is et.DType.F64 and state["exp_avg_sq"].dtype is et.DType.F64


def test_a_row_sparse_gradient_flows_back_across_a_move(second):
    weight = et.Tensor(np.arange(12, dtype=np.float32).reshape(6, 2), requires_grad=True)
    out = et.nn.functional.embedding([1, 4, 1], weight.to(second, et.DType.F64), sparse=True)
    out.sum().backward()
    assert isinstance(weight.grad, et.RowSparseGrad)
    assert_on(weight.grad.values, et.Device.CPU)
    assert weight.grad.dtype is et.DType.F32 and weight.grad.indices.tolist() == [1, 4]
    np.testing.assert_array_equal(weight.grad.to_dense().numpy()[[1, 4]], [[2.0, 2.0], [1.0, 1.0]])


def test_a_reassigned_weight_is_the_one_looked_up():
    emb = Embedding(4, 2, max_norm=1.0)
    replacement = et.Tensor(np.full((4, 2), 3.0, np.float32), requires_grad=True)
    emb.weight = replacement
    out = emb([2])
    np.testing.assert_allclose(np.linalg.norm(out.numpy()), 1.0, rtol=1e-5)  # renormed the new table
    assert np.linalg.norm(replacement.numpy()[2]) == pytest.approx(1.0, rel=1e-5)
    out.sum().backward()
    assert replacement.grad is not None and emb.parameters() == [replacement]
