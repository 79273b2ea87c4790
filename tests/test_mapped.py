"""File-backed tables (SPEC §11): `create`, `open`, `commit`, `path`, bit-identical to the
same table in memory, read-only refusals, one writable handle, and what the files hold.
(The lookup semantics are also run over file-backed tables by test_embedding*.py through
the `both_storages` fixture; a process killed mid-step is test_crash.py.)"""

import gc
import json
import os

import numpy as np
import pytest
import safetensors.numpy

import embtable as et
import embtable.tables.table_files as table_files
from embtable.nn import Embedding, EmbeddingBag
from embtable.optim import SGD, Adagrad, Adam, AdamW, RowWiseAdagrad
from embtable.rng import CHUNK_ROWS

from committed_state import committed_state

ROWS, DIM = 300, 8


# --- creation --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["F32", "F64", "F16", "BF16"])
def test_create_draws_the_seeds_table(tmp_path, dtype):
    rows = CHUNK_ROWS + 37  # two chunks of the seed's streams
    et.manual_seed(11)
    memory = Embedding(rows, 5, padding_idx=7, dtype=dtype).weight.numpy()
    et.manual_seed(11)
    file = Embedding.create(tmp_path / "t.safetensors", rows, 5, padding_idx=7, dtype=dtype)
    assert file.weight.numpy().tobytes() == memory.tobytes()
    assert file.path == str(tmp_path / "t.safetensors")
    assert Embedding(3, 2).path is None
    # the file is a checkpoint the ecosystem reads, its rows starting on a page
    loaded = et.nn.Embedding.load(tmp_path / "t.safetensors")
    assert loaded.weight.numpy().tobytes() == memory.tobytes() and loaded.padding_idx == 7
    header = int.from_bytes((tmp_path / "t.safetensors").read_bytes()[:8], "little")
    assert (8 + header) % 4096 == 0
    if dtype != "BF16":
        assert safetensors.numpy.load_file(tmp_path / "t.safetensors")["weight"].tobytes() == memory.tobytes()


def test_create_replaces_an_earlier_table_and_its_state(tmp_path):
    path = tmp_path / "t.safetensors"
    first = Embedding.create(path, 10, 2)
    opt = Adam(first.parameters())
    first(np.array([1])).sum().backward()
    opt.step()
    first.commit()
    del first, opt
    gc.collect()
    et.manual_seed(5)
    second = Embedding.create(path, 10, 2)
    et.manual_seed(5)
    assert np.array_equal(second.weight.numpy(), Embedding(10, 2).weight.numpy())
    assert Adam(second.parameters()).state == [{}]
    assert sorted(os.listdir(f"{path}.state")) == ["log-0", "manifest.json"]


def test_create_and_open_restore_every_option(tmp_path):
    bag = EmbeddingBag.create(tmp_path / "b.safetensors", 20, 3, mode="max", include_last_offset=True,
                              padding_idx=2, max_norm=1.5, norm_type=1.0, scale_grad_by_freq=True,
                              max_norm_mode="clip", dtype="F64")
    del bag
    gc.collect()
    bag = EmbeddingBag.open(tmp_path / "b.safetensors")
    assert (bag.mode, bag.include_last_offset, bag.padding_idx, bag.max_norm, bag.norm_type,
            bag.scale_grad_by_freq, bag.max_norm_mode, bag.sparse, bag.weight.dtype) == \
        ("max", True, 2, 1.5, 1.0, True, "clip", True, et.DType.F64)
    emb = Embedding.create(tmp_path / "e.safetensors", 4, 2, sparse=False)
    assert emb.sparse is False and repr(emb) == "Embedding(4, 2)"


def test_any_saved_layer_opens_in_place(tmp_path, rng):
    saved = Embedding.from_pretrained(rng.standard_normal((40, 6)), freeze=False, padding_idx=3, sparse=True)
    saved.save(tmp_path / "s.safetensors")
    opened = Embedding.open(tmp_path / "s.safetensors")
    ids = rng.integers(0, 40, (5, 7))
    assert opened(ids).numpy().tobytes() == saved(ids).numpy().tobytes()
    assert opened.padding_idx == 3 and opened.sparse and opened.weight.requires_grad
    frozen = Embedding.from_pretrained(rng.standard_normal((4, 2)))
    frozen.save(tmp_path / "f.safetensors")
    assert Embedding.open(tmp_path / "f.safetensors").weight.requires_grad is False


# --- training, bit for bit -------------------------------------------------------------------

OPTIMIZERS = [(Adam, dict(lr=0.05)), (AdamW, dict(lr=0.05)), (SGD, dict(lr=0.3)), (Adagrad, dict(lr=0.2)),
              (RowWiseAdagrad, dict(lr=0.2))]


def pair(kind, tmp_path, cache_bytes, **options):
    """The same table in memory and in a file (`cache_bytes`)."""
    et.manual_seed(3)
    memory = kind(ROWS, DIM, **options)
    et.manual_seed(3)
    file = kind.create(tmp_path / "t.safetensors", ROWS, DIM, cache_bytes=cache_bytes, **options)
    return memory, file


def batches(rng, steps, bag):
    """Zipf-ish ids (hot rows repeat, so the cache hits and misses) and, for bags, offsets."""
    for _ in range(steps):
        ids = np.minimum(rng.zipf(1.3, 60) - 1, ROWS - 1)
        offsets = np.sort(rng.choice(61, 9, replace=False))
        offsets[0] = 0
        yield (ids, offsets) if bag else (ids.reshape(6, 10), None)


@pytest.mark.parametrize("cache_bytes", [1, 2000, None], ids=["one-row", "small", "default"])
@pytest.mark.parametrize("optimizer, hyper", OPTIMIZERS, ids=[o.__name__ for o, _ in OPTIMIZERS])
def test_sparse_training_is_bit_identical_in_a_file(tmp_path, rng, optimizer, hyper, cache_bytes):
    memory, file = pair(Embedding, tmp_path, cache_bytes, sparse=True, padding_idx=4, max_norm=1.2,
                        scale_grad_by_freq=True)
    opt_memory, opt_file = optimizer(memory.parameters(), **hyper), optimizer(file.parameters(), **hyper)
    target = rng.standard_normal((6, 10, DIM))
    for step, (ids, _) in enumerate(batches(rng, 12, bag=False)):
        outputs = []
        for layer, opt in ((memory, opt_memory), (file, opt_file)):
            opt.zero_grad()
            out = layer(ids)
            ((out - et.Tensor(target, dtype=out.dtype)) ** 2).sum().backward()
            opt.step()
            outputs.append(out.numpy())
        assert outputs[0].tobytes() == outputs[1].tobytes(), step
        if step == 5:  # reading the weight mid-training sees every change
            assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    file.commit()
    assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    path = file.path
    del file, opt_file, layer, opt
    gc.collect()
    reopened = Embedding.open(path, cache_bytes=cache_bytes)
    assert reopened.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    state = dict(opt_memory.state[0])
    assert json.loads(open(f"{path}.state/manifest.json").read())["steps"] == {optimizer.__name__: state.pop("step")}
    if state:
        stored = committed_state(path, optimizer.__name__, {name: value.shape[1:] for name, value in state.items()},
                                 ROWS)
        for name, value in state.items():
            assert stored[name].tobytes() == value.numpy().tobytes(), name


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("cache_bytes", [1, None], ids=["one-row", "default"])
def test_bag_training_is_bit_identical_in_a_file(tmp_path, rng, mode, cache_bytes):
    memory, file = pair(EmbeddingBag, tmp_path, cache_bytes, mode=mode, padding_idx=0, max_norm=2.0, sparse=True)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(file.parameters(), lr=0.05)]
    for step, (ids, offsets) in enumerate(batches(rng, 10, bag=True)):
        weights = rng.standard_normal(ids.shape)
        outputs = []
        for layer, opt in zip((memory, file), opts):
            opt.zero_grad()
            sample = et.Tensor(weights, dtype=layer.weight.dtype, requires_grad=True)
            out = layer(ids, offsets, per_sample_weights=sample)
            (out * out).sum().backward()
            opt.step()
            outputs.append((out.numpy(), sample.grad.numpy()))
        assert outputs[0][0].tobytes() == outputs[1][0].tobytes(), step
        assert outputs[0][1].tobytes() == outputs[1][1].tobytes(), step
    assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()


@pytest.mark.parametrize("optimizer, hyper", OPTIMIZERS, ids=[o.__name__ for o, _ in OPTIMIZERS])
def test_dense_gradients_train_a_file_backed_table(tmp_path, rng, optimizer, hyper, monkeypatch):
    monkeypatch.setattr(et.tables.mapped, "DENSE_CHUNK_ROWS", 64)  # several chunks, evicting each other
    memory, file = pair(Embedding, tmp_path, 3000, sparse=False)
    opts = [optimizer(memory.parameters(), **hyper), optimizer(file.parameters(), **hyper)]
    for ids, _ in batches(rng, 4, bag=False):
        for layer, opt in zip((memory, file), opts):
            opt.zero_grad()
            layer(ids).sum().backward()
            opt.step()
    assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()


def test_a_batch_larger_than_the_cache_still_works(tmp_path, rng):
    memory, file = pair(Embedding, tmp_path, 1, sparse=True)
    ids = np.arange(ROWS)[::-1]
    opts = [SGD(memory.parameters(), lr=0.5), SGD(file.parameters(), lr=0.5)]
    for layer, opt in zip((memory, file), opts):
        layer(ids).sum().backward()
        opt.step()
    assert file(ids).numpy().tobytes() == memory(ids).numpy().tobytes()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_rowwise_adagrad_in_a_file_matches_the_spec(tmp_path, rng, sparse):
    start = rng.standard_normal((20, 3))
    Embedding.from_pretrained(start, freeze=False).save(tmp_path / "t.safetensors")
    table = Embedding.open(tmp_path / "t.safetensors", writable=True, cache_bytes=200).weight
    steps = [(np.array(rows), rng.standard_normal((len(rows), 3)))
             for rows in ([1, 4, 5], [4, 9], [0, 1, 19], [5], [1, 4, 9, 12])]
    if not sparse:
        steps = [(np.arange(20), rng.standard_normal((20, 3))) for _ in range(4)]
    opt = RowWiseAdagrad([table], lr=0.3, eps=1e-6)
    for rows, values in steps:
        table.grad = (et.RowSparseGrad(et.Tensor(rows), et.Tensor(values, dtype=et.DType.F64), (20, 3)) if sparse
                      else et.Tensor(values, dtype=et.DType.F64))
        opt.step()
    weight, total = start.copy(), np.zeros(20)
    for rows, values in steps:  # SPEC §6 in float64
        total[rows] += (values ** 2).mean(axis=1)
        weight[rows] -= 0.3 * values / (np.sqrt(total[rows])[:, None] + 1e-6)
    np.testing.assert_allclose(table.numpy(), weight, rtol=1e-12, atol=1e-12)
    storage = et.tables.storage_of(table)
    storage.commit()
    stored = committed_state(storage.path, "RowWiseAdagrad", {"sum": ()}, 20, np.float64)["sum"]
    np.testing.assert_allclose(stored, total, rtol=1e-12, atol=1e-14)


def test_training_resumes_from_the_last_commit(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(et.tables.mapped, "WRITE_CHUNK_ROWS", 7)  # a commit writes its rows back in many chunks
    memory, file = pair(Embedding, tmp_path, 500, sparse=True)
    path = file.path
    opt_memory = Adam(memory.parameters(), lr=0.05)
    opt = Adam(file.parameters(), lr=0.05)
    for step, (ids, _) in enumerate(batches(rng, 12, bag=False)):
        for layer, optimizer in ((memory, opt_memory), (file, opt)):
            optimizer.zero_grad()
            layer(ids).sum().backward()
            optimizer.step()
        if step == 7:
            file.commit()
            committed = memory.weight.numpy()
        if step == 7 or step == 11:  # a new handle, then a new optimizer over it, each time
            if step == 11:  # the last four steps were not committed: lost
                del file, opt, layer, optimizer
                gc.collect()
                file = Embedding.open(path, writable=True)
                assert file.weight.numpy().tobytes() == committed.tobytes()
    opt = Adam(file.parameters(), lr=0.05)
    assert opt.state == [{"step": 8}]


class Killed(BaseException):
    """Stands for the process dying where it is raised."""


def test_a_fold_cut_short_leaves_the_last_commit_whole(tmp_path, rng, monkeypatch):
    memory, file = pair(Embedding, tmp_path, 1, sparse=True)  # a one-row budget: every commit folds its log
    path = file.path
    opt_memory, opt = Adam(memory.parameters(), lr=0.5), Adam(file.parameters(), lr=0.5)
    for ids, _ in batches(rng, 2, bag=False):
        for layer, optimizer in ((memory, opt_memory), (file, opt)):
            optimizer.zero_grad()
            layer(ids).sum().backward()
            optimizer.step()
    write = table_files.write_rows

    def dies_halfway(fd, offsets, rows, places, threads=1):
        write(fd, offsets[:offsets.shape[0] // 2], rows, places[:offsets.shape[0] // 2])
        raise Killed

    with monkeypatch.context() as patch:  # the manifest is written, then the fold dies in its first array
        patch.setattr(table_files, "write_rows", dies_halfway)
        with pytest.raises(Killed):
            file.commit()
    committed = memory.weight.numpy()
    del file, opt, layer, optimizer
    gc.collect()
    file = Embedding.open(path, writable=True, cache_bytes=1)
    assert file.weight.numpy().tobytes() == committed.tobytes()
    stored = committed_state(path, "Adam", {"exp_avg": (DIM,), "exp_avg_sq": (DIM,)}, ROWS)
    for name in ("exp_avg", "exp_avg_sq"):
        assert stored[name].tobytes() == opt_memory.state[0][name].numpy().tobytes()
    opt = Adam(file.parameters(), lr=0.5)
    for ids, _ in batches(rng, 3, bag=False):  # logged (the cache holds one row), never committed
        opt.zero_grad()
        file(ids).sum().backward()
        opt.step()
    assert file.weight.numpy().tobytes() != committed.tobytes()
    del file, opt
    gc.collect()
    assert Embedding.load(path).weight.numpy().tobytes() == committed.tobytes()
    assert Embedding.open(path).weight.numpy().tobytes() == committed.tobytes()


def weight_at(path, tag):
    """The table's weight as of its commit tagged `tag`."""
    files = et.tables.TableFiles(str(path), writable=False, at_commit=tag)
    try:
        weight = np.array(safetensors.numpy.load_file(str(path))["weight"])
        files.overlay(weight)
        return weight
    finally:
        files.close()


def test_a_tagged_commit_keeps_the_one_before_it_until_the_log_is_folded(tmp_path, rng):
    _, file = pair(Embedding, tmp_path, 1, sparse=True)  # a one-row budget: every fold folds
    storage, opt = et.tables.storage_of(file.weight), Adam(file.parameters(), lr=0.5)
    committed = []
    for tag, (ids, _) in enumerate(batches(rng, 2, bag=False), start=1):
        opt.zero_grad()
        file(ids).sum().backward()
        opt.step()
        storage.commit(tag, tag - 1 or None)  # as a sharded table's shard does: no fold yet
        committed.append(file.weight.numpy().copy())
    storage.commit(2, 1)  # tried again (as after a commit of the tables cut short): 1 is still the one kept
    with pytest.raises(et.SerializationError, match=r"holds commits \[2, 1\], not commit 7 to keep"):
        storage.commit(3, 7)
    assert weight_at(file.path, 1).tobytes() == committed[0].tobytes()
    assert weight_at(file.path, 2).tobytes() == committed[1].tobytes()
    with pytest.raises(et.SerializationError, match=r"holds commits \[2, 1\], not commit 3"):
        weight_at(file.path, 3)
    storage.fold()
    assert weight_at(file.path, 2).tobytes() == committed[1].tobytes()
    with pytest.raises(et.SerializationError, match=r"holds commits \[2\], not commit 1"):
        weight_at(file.path, 1)


def test_commits_fold_the_log_only_once_it_has_grown(tmp_path, rng):
    for cache_bytes, folds in ((1, True), (None, False)):
        memory, file = pair(Embedding, tmp_path, cache_bytes, sparse=True)
        opt_memory, opt = SGD(memory.parameters(), lr=0.5), SGD(file.parameters(), lr=0.5)
        for ids, _ in batches(rng, 4, bag=False):
            for layer, optimizer in ((memory, opt_memory), (file, opt)):
                optimizer.zero_grad()
                layer(ids).sum().backward()
                optimizer.step()
            file.commit()
        manifest = json.loads(open(f"{file.path}.state/manifest.json").read())
        assert (manifest["logged"] == 0) == folds
        assert sorted(os.listdir(f"{file.path}.state")) == [manifest["log"], "manifest.json"]
        checkpoint = safetensors.numpy.load_file(file.path)["weight"]
        assert (checkpoint.tobytes() == memory.weight.numpy().tobytes()) == folds
        assert Embedding.load(file.path).weight.numpy().tobytes() == memory.weight.numpy().tobytes()
        del file, opt, layer, optimizer
        gc.collect()


# --- prefetching ----------------------------------------------------------------------------

class Deferred:
    """Stands for `in_background`, its job run only when its end is asked for: a prefetch
    as slow as it may be. A call that used the prefetched rows without waiting for them
    would see zeros (the cache's empty slots) and train differently."""

    def __init__(self, job):
        self._job = job
        self._done = False

    def result(self):
        if not self._done:
            self._done = True
            self._job()


@pytest.mark.parametrize("background", ["thread", "deferred"])
@pytest.mark.parametrize("cache_bytes", [1, 2000, None], ids=["one-row", "small", "default"])
@pytest.mark.parametrize("optimizer, hyper", [OPTIMIZERS[0], OPTIMIZERS[-1]], ids=["Adam", "RowWiseAdagrad"])
def test_prefetching_trains_bit_for_bit_as_without(tmp_path, rng, monkeypatch, optimizer, hyper, cache_bytes,
                                                   background):
    if background == "deferred":
        monkeypatch.setattr(et.tables.mapped, "in_background", Deferred)
    memory, file = pair(Embedding, tmp_path, cache_bytes, sparse=True, padding_idx=4, max_norm=1.2)
    opts = [optimizer(memory.parameters(), **hyper), optimizer(file.parameters(), **hyper)]
    steps = [ids for ids, _ in batches(rng, 12, bag=False)]
    file.prefetch(steps[0])  # before the optimizer's first step makes its state
    for step, ids in enumerate(steps):
        if step + 1 < len(steps):
            file.prefetch(steps[step + 1])
        if step % 4 == 1:  # ids no step uses, while the last prefetch is still in flight
            file.prefetch(rng.integers(0, ROWS, 40))
        outputs = []
        for layer, opt in zip((memory, file), opts):
            opt.zero_grad()
            out = layer(ids)
            (out * out).sum().backward()
            opt.step()
            outputs.append(out.numpy())
        assert outputs[0].tobytes() == outputs[1].tobytes(), step
        if step == 5:
            file.prefetch(steps[step + 2])
            assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
        if step == 7:
            file.prefetch(rng.integers(0, ROWS, 40))
            file.commit()
    file.prefetch(rng.integers(0, ROWS, 40))
    file.load_state_dict(memory.state_dict())  # replaces every row, the prefetched ones too
    file.prefetch(np.arange(ROWS))
    assert file(np.arange(ROWS)).numpy().tobytes() == memory(np.arange(ROWS)).numpy().tobytes()


def test_a_prefetch_that_fails_raises_at_the_next_call_and_leaves_the_table_whole(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(et.tables.mapped, "in_background", Deferred)
    memory, file = pair(Embedding, tmp_path, 2000, sparse=True)
    opts = [SGD(memory.parameters(), lr=0.5), SGD(file.parameters(), lr=0.5)]
    read = table_files.read_rows

    def fails(fd, offsets, rows, places, threads):
        raise OSError(5, "the disk failed")

    ids = np.arange(0, ROWS, 7)
    for attempt in range(2):
        if attempt == 0:  # the read runs (and fails) when the lookup waits for it
            with monkeypatch.context() as patch:
                patch.setattr(table_files, "read_rows", fails)
                file.prefetch(ids)
                with pytest.raises(OSError, match="the disk failed"):
                    file(ids)
            assert table_files.read_rows is read
        for layer, opt in zip((memory, file), opts):
            opt.zero_grad()
            layer(ids).sum().backward()
            opt.step()
    assert file.weight.numpy().tobytes() == memory.weight.numpy().tobytes()


def test_prefetch_checks_its_ids_like_a_lookup(tmp_path, rng):
    bag = EmbeddingBag.create(tmp_path / "b.safetensors", ROWS, DIM, cache_bytes=1)
    reader = EmbeddingBag.open(tmp_path / "b.safetensors")  # read-only: a prefetch only reads
    memory = EmbeddingBag.load(tmp_path / "b.safetensors")
    for layer in (bag, reader, memory):
        with pytest.raises(et.IndexOutOfRangeError, match=f"{ROWS}"):
            layer.prefetch(np.array([[1, 2], [3, ROWS]]))
        with pytest.raises(et.DTypeError):
            layer.prefetch(np.array([1.5]))
        layer.prefetch(np.array([[1, 2], [3, ROWS - 1]]))
    ids = np.array([[1, 2], [3, ROWS - 1]])
    assert reader(ids).numpy().tobytes() == memory(ids).numpy().tobytes()
    assert bag(ids).numpy().tobytes() == memory(ids).numpy().tobytes()


# --- refusals ------------------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path, rng):
    weights = rng.uniform(-1, 1, (30, 4))  # norms below 2
    weights[5] *= 10  # a row longer than max_norm
    Embedding.from_pretrained(weights, freeze=False, sparse=True, max_norm=3.0).save(tmp_path / "r.safetensors")
    return Embedding.open(tmp_path / "r.safetensors")


def test_a_read_only_table_refuses_every_change_before_making_it(read_only, tmp_path, rng):
    before = (tmp_path / "r.safetensors").read_bytes()
    short = np.array([0, 1, 2])
    read_only(short).sum().backward()  # a renorm that rescales nothing is a lookup
    other = et.Tensor(np.ones(3), requires_grad=True)
    other.grad = et.Tensor(np.ones(3))
    opt = SGD([other, read_only.weight], lr=1.0)
    with pytest.raises(et.InvalidArgumentError, match="read-only"):
        opt.step()
    assert (other.numpy() == 1).all()  # nothing changed, not even the other parameter
    with pytest.raises(et.InvalidArgumentError, match="renorm"):
        read_only(np.array([1, 5]))
    with pytest.raises(et.InvalidArgumentError, match="read-only"):
        read_only.load_state_dict({"weight": np.zeros((30, 4))})
    with pytest.raises(et.InvalidArgumentError, match="commit"):
        read_only.commit()
    with pytest.raises(et.InvalidArgumentError, match="in place"), et.no_grad():
        read_only.weight[0] = 0
    with pytest.raises(et.InvalidArgumentError, match="read-only"):
        read_only.to(dtype="F32")
    assert (tmp_path / "r.safetensors").read_bytes() == before
    assert not os.path.exists(tmp_path / "r.safetensors.state")
    np.testing.assert_array_equal(read_only(np.array([3])).numpy(), Embedding.load(tmp_path / "r.safetensors")(
        np.array([3])).numpy())


def test_a_file_backed_table_stays_on_the_cpu_in_its_dtype(tmp_path):
    table = Embedding.create(tmp_path / "t.safetensors", 10, 2)
    before = table.weight.numpy()
    with pytest.raises(et.InvalidArgumentError, match="stays F32 on cpu"):
        table.to(dtype="F64")
    assert table.to("cpu", "F32") is table and table.weight.numpy().tobytes() == before.tobytes()


def test_an_in_memory_table_has_no_commit():
    with pytest.raises(et.InvalidArgumentError, match="in memory"):
        Embedding(3, 2).commit()


def test_one_writable_handle_at_a_time(tmp_path):
    path = tmp_path / "t.safetensors"
    first = Embedding.create(path, 10, 2)
    with pytest.raises(et.InvalidArgumentError, match="already open for writing"):
        Embedding.open(path, writable=True)
    reader = Embedding.open(path)  # readers may come and go
    assert reader(np.array([1])).shape == (1, 2)
    del first
    gc.collect()
    Embedding.open(path, writable=True)


@pytest.mark.parametrize("content, words", [
    (b"", "not a safetensors file"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......", "bad JSON"),
    (os.urandom(4096), "not a safetensors file"),
])
def test_a_file_that_is_not_a_table_raises_serialization_error(tmp_path, content, words):
    (tmp_path / "x").write_bytes(content)
    with pytest.raises(et.SerializationError, match=words):
        Embedding.open(tmp_path / "x", writable=True)
    assert not os.path.exists(tmp_path / "x.state")


def test_other_checkpoints_raise_serialization_error(tmp_path, rng):
    safetensors.numpy.save_file({"weight": np.zeros((3, 2), np.float32)}, tmp_path / "plain.safetensors")
    with pytest.raises(et.SerializationError, match="not an embtable layer"):
        Embedding.open(tmp_path / "plain.safetensors", writable=True)
    EmbeddingBag(5, 2).save(tmp_path / "bag.safetensors")
    with pytest.raises(et.SerializationError, match="EmbeddingBag layer, not Embedding"):
        Embedding.open(tmp_path / "bag.safetensors")
    et.nn.Linear(2, 3).save(tmp_path / "linear.safetensors")
    with pytest.raises(et.SerializationError):
        Embedding.open(tmp_path / "linear.safetensors")
    Embedding(4, 2).save(tmp_path / "t.safetensors")
    os.makedirs(tmp_path / "t.safetensors.state")
    (tmp_path / "t.safetensors.state" / "manifest.json").write_text("{")
    with pytest.raises(et.SerializationError, match="manifest"):
        Embedding.open(tmp_path / "t.safetensors")


def test_bad_cache_bytes(tmp_path):
    Embedding(4, 2).save(tmp_path / "t.safetensors")
    with pytest.raises(et.InvalidArgumentError, match="cache_bytes"):
        Embedding.open(tmp_path / "t.safetensors", cache_bytes=-1)


def test_sgd_without_momentum_steps_a_table_whose_files_hold_momentum(tmp_path):
    """Plain SGD keeps no state, so the momentum SGD left in the files is not its to check."""
    path = tmp_path / "m.safetensors"
    table = Embedding.create(path, 10, 3, sparse=True)
    optimizer = SGD(table.parameters(), lr=0.1, momentum=0.9)
    table(np.array([1, 2])).sum().backward()
    optimizer.step()
    table.commit()
    del table, optimizer
    gc.collect()
    reopened = Embedding.open(path, writable=True)
    before = reopened.weight.numpy().copy()
    plain = SGD(reopened.parameters(), lr=0.5)
    reopened(np.array([3])).sum().backward()
    plain.step()
    expected = before.copy()
    expected[3] -= 0.5
    np.testing.assert_allclose(reopened.weight.numpy(), expected, rtol=1e-6)
