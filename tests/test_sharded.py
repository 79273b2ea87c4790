"""Sharded tables (SPEC §12) on a local Ray cluster: the same seed's rows, and lookups, bags,
gradients and optimizer steps bit for bit as the in-memory table, for several shard counts;
errors raised before any shard changes; moving to and from one process; where rows go."""

import copy
import gc
import os
import signal
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et
import embtable.tables.ray_shards
import ray
from embtable.nn import Embedding, EmbeddingBag
from embtable.optim import SGD, Adagrad, Adam, AdamW, RowWiseAdagrad
from embtable.tables.placement import Placement

from embtable.distributed import ShardedEmbedding, ShardedEmbeddingBag

ROWS, DIM = 500, 6


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# --- where rows go (no cluster needed) ------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 3000), shards=st.integers(1, 7), data=st.data())
def test_placement_deals_every_row_to_one_shard_and_finds_it_again(rows, shards, data):
    shards = min(shards, rows)
    placement = Placement(rows, shards)
    assert sum(placement.size_of(k) for k in range(shards)) == rows
    held = np.concatenate([placement.rows_of(k) for k in range(shards)])
    assert np.array_equal(np.sort(held), np.arange(rows))  # a bijection
    asked = np.unique(data.draw(st.lists(st.integers(0, rows - 1), max_size=50))).astype(np.int64)
    seen = np.zeros(asked.shape[0], int)
    for k, (picked, places) in enumerate(placement.split(asked)):
        assert np.all(np.diff(places) > 0) and np.all((0 <= places) & (places < placement.size_of(k)))
        assert np.array_equal(placement.rows_of(k)[places], asked[picked])
        seen[picked] += 1
    assert np.all(seen == 1)


def test_placement_spreads_neighbouring_ids_over_the_shards():
    placement = Placement(100_000, 4)
    counts = [picked.shape[0] for picked, _ in placement.split(np.arange(1000, dtype=np.int64))]
    assert min(counts) > 200  # the first thousand ids (hot in a frequency-sorted vocabulary) spread


# --- bit for bit as in memory ---------------------------------------------------------------

def pair(local_kind, sharded_kind, shards, **options):
    et.manual_seed(7)
    memory = local_kind(ROWS, DIM, sparse=True, **options)
    et.manual_seed(7)
    return memory, sharded_kind(ROWS, DIM, shards=shards, **options)


@pytest.mark.parametrize("dtype", ["F32", "F64", "BF16"])
def test_the_seed_gives_the_same_table_at_any_shard_count(dtype):
    et.manual_seed(3)
    memory = Embedding(ROWS, DIM, padding_idx=9, dtype=dtype).weight.numpy()
    for shards in (1, 4):
        et.manual_seed(3)
        table = ShardedEmbedding(ROWS, DIM, shards=shards, padding_idx=9, dtype=dtype)
        assert table.shards == shards and len(table.shard_actors) == shards
        assert table.weight.numpy().tobytes() == memory.tobytes()
        assert table.weight.dtype == et.DType[dtype] and table.sparse


OPTIMIZERS = [(Adam, dict(lr=0.05)), (AdamW, dict(lr=0.05)), (SGD, dict(lr=0.3, momentum=0.9)),
              (Adagrad, dict(lr=0.2)), (RowWiseAdagrad, dict(lr=0.2))]
STEPS = 20


def same_state(mine, theirs):
    """Two optimizers' state dicts hold the same values, bit for bit."""
    ours, reference = mine.state_dict()["state"][0], theirs.state_dict()["state"][0]
    assert ours.keys() == reference.keys()
    for name, value in ours.items():
        assert np.asarray(getattr(value, "numpy", lambda: value)()).tobytes() == \
            np.asarray(getattr(reference[name], "numpy", lambda: reference[name])()).tobytes(), name


@pytest.mark.parametrize("optimizer, hyper", OPTIMIZERS, ids=[o.__name__ for o, _ in OPTIMIZERS])
def test_training_is_bit_identical_to_one_process(rng, optimizer, hyper):
    for shards in (1, 2, 3, 4):  # max_norm renorms the weight at odd counts, clips the output at even ones
        mode = "renorm" if shards % 2 else "clip"
        memory, table = pair(Embedding, ShardedEmbedding, shards, padding_idx=4, max_norm=1.1, max_norm_mode=mode,
                             scale_grad_by_freq=True)
        opts = [optimizer(memory.parameters(), **hyper), optimizer(table.parameters(), **hyper)]
        target = rng.standard_normal((5, 9, DIM))
        for step in range(STEPS):
            ids = np.minimum(rng.zipf(1.4, (5, 9)) - 1, ROWS - 1)
            results = []
            for layer, opt in zip((memory, table), opts):
                opt.zero_grad()
                out = layer(ids)
                ((out - et.Tensor(target, dtype=out.dtype)) ** 2).sum().backward()
                grad = layer.weight.grad
                results.append((out.numpy(), grad.indices.numpy(), grad.values.numpy()))
                opt.step()
            for mine, theirs in zip(*results):
                assert mine.tobytes() == theirs.tobytes(), (shards, step)
        assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes(), shards
        same_state(opts[1], opts[0])
        assert opts[1].state[0]["step"] == STEPS


BAG_OPTIMIZERS = [OPTIMIZERS[k] for k in (0, 2, 3, 4)]


@pytest.mark.parametrize("optimizer, hyper", BAG_OPTIMIZERS, ids=[o.__name__ for o, _ in BAG_OPTIMIZERS])
def test_bags_are_bit_identical_to_one_process(rng, optimizer, hyper):
    for shards, mode in zip((1, 2, 3, 4), ("sum", "mean", "max", "sum")):
        memory, table = pair(EmbeddingBag, ShardedEmbeddingBag, shards, mode=mode, padding_idx=2, max_norm=2.0,
                             max_norm_mode="renorm" if shards < 4 else "clip", scale_grad_by_freq=shards == 2)
        opts = [optimizer(memory.parameters(), **hyper), optimizer(table.parameters(), **hyper)]
        for step in range(STEPS):
            ids = np.minimum(rng.zipf(1.3, 30) - 1, ROWS - 1)
            ids[::7] = 2
            offsets = np.array([0, 3, 3, 11, 20])
            weights = rng.standard_normal(30) if mode != "max" else None
            results = []
            for layer, opt in zip((memory, table), opts):
                opt.zero_grad()
                sample = None if weights is None else et.Tensor(weights, dtype=layer.weight.dtype,
                                                                requires_grad=True)
                out = layer(ids, offsets, per_sample_weights=sample)
                (out * out).sum().backward()
                opt.step()
                results.append((out.numpy(), None if sample is None else sample.grad.numpy()))
            assert results[0][0].tobytes() == results[1][0].tobytes(), (shards, step)
            if weights is not None:
                assert results[0][1].tobytes() == results[1][1].tobytes(), (shards, step)
        assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes(), shards
        same_state(opts[1], opts[0])


def test_to_local_and_from_local_keep_rows_and_options(rng):
    local = EmbeddingBag.from_pretrained(rng.standard_normal((50, 4)), freeze=False, mode="sum", padding_idx=1,
                                         include_last_offset=True, max_norm=3.0, max_norm_mode="clip")
    sharded = ShardedEmbeddingBag.from_local(local, shards=3)
    assert sharded.weight.numpy().tobytes() == local.weight.numpy().tobytes() and sharded.sparse
    back = sharded.to_local()
    assert type(back) is EmbeddingBag and back.config() == {**local.config(), "sparse": True}
    assert back.weight.numpy().tobytes() == local.weight.numpy().tobytes() and back.weight.requires_grad
    ids, offsets = rng.integers(0, 50, 12), np.array([0, 5, 12])
    assert sharded(ids, offsets).numpy().tobytes() == local(ids, offsets).numpy().tobytes()
    with pytest.raises(et.InvalidArgumentError, match="takes a EmbeddingBag"):
        ShardedEmbeddingBag.from_local(Embedding(5, 2))


# --- errors before any change ---------------------------------------------------------------

def test_errors_are_the_local_ones_and_change_no_shard(rng):
    memory, table = pair(Embedding, ShardedEmbedding, 2, max_norm=0.5)
    before = table.weight.numpy()
    opt = Adam(table.parameters(), lr=0.1)
    with pytest.raises(et.IndexOutOfRangeError, match=f"{ROWS}"):
        table(np.array([1, 2, ROWS]))  # a renorm of rows 1 and 2 would change them: checked first
    with pytest.raises(et.IndexOutOfRangeError):
        memory(np.array([1, 2, ROWS]))
    table.weight.grad = et.RowSparseGrad(et.Tensor(np.array([1, ROWS])), et.Tensor(np.ones((2, DIM), np.float32)),
                                         (ROWS, DIM))
    with pytest.raises(et.ShapeError, match="index 500"):
        opt.step()
    assert table.weight.numpy().tobytes() == before.tobytes() and opt.state == [{}]
    with pytest.raises(et.InvalidArgumentError, match="in place"), et.no_grad():
        table.weight[0] = 0
    with pytest.raises(et.InvalidArgumentError, match="commit"):
        table.commit()
    for bad in (dict(shards=0), dict(shards=ROWS + 1), dict(num_cpus=0), dict(cache_bytes=1 << 20),
                dict(path="never-made", cache_bytes=-1)):
        with pytest.raises(et.InvalidArgumentError):
            ShardedEmbedding(ROWS, DIM, **bad)
    assert not os.path.exists("never-made")


@pytest.mark.backend_independent
def test_tables_share_shard_processes_and_free_their_shards_when_dropped():
    first, second = ShardedEmbedding(ROWS, DIM, shards=2), ShardedEmbedding(ROWS, DIM, shards=3)
    assert second.shard_actors[:2] == first.shard_actors  # shard k of every table on host k
    host = second.shard_actors[0]
    held = set(ray.get(host.keys.remote(), timeout=60))
    del first
    gc.collect()
    assert len(set(ray.get(host.keys.remote(), timeout=60))) == len(held) - 1
    assert second(np.array([0, ROWS - 1])).shape == (2, DIM)


# --- prefetch -------------------------------------------------------------------------------

def test_prefetched_rows_are_those_a_lookup_would_fetch(rng, monkeypatch):
    prefetched_rows_are_those_a_lookup_would_fetch(rng, monkeypatch, killed=False)


@pytest.mark.backend_independent
def test_prefetched_rows_survive_a_shard_killed_while_they_come(rng, monkeypatch):
    prefetched_rows_are_those_a_lookup_would_fetch(rng, monkeypatch, killed=True)


def prefetched_rows_are_those_a_lookup_would_fetch(rng, monkeypatch, killed):
    fetches = []
    sent = et.tables.ray_shards.RayShards.call

    def counting(self, calls, replays=None):
        fetches.extend(1 for _, method, _ in calls[:1] if method == "gather")
        return sent(self, calls, replays)

    monkeypatch.setattr(et.tables.ray_shards.RayShards, "call", counting)
    memory, table = pair(Embedding, ShardedEmbedding, 3, padding_idx=4, scale_grad_by_freq=True)
    opts = [(Adam(layer.parameters(), lr=0.05), SGD(layer.parameters(), lr=0.1, momentum=0.9))  # two steps between
            for layer in (memory, table)]
    batches = [np.minimum(rng.zipf(1.3, (5, 9)) - 1, ROWS - 1) for _ in range(10)]
    for step, ids in enumerate(batches):
        outputs = []
        for layer, layer_opts in zip((memory, table), opts):
            for opt in layer_opts:
                opt.zero_grad()
            out = layer(ids)
            (out * out).sum().backward()
            if step + 1 < len(batches):  # steps 3 and 7 prefetch other ids than the next lookup's
                layer.prefetch(batches[step + 1] if step % 4 != 3 else batches[step + 1][:2])
            for opt in layer_opts:
                opt.step()
            if step == 6 and layer is table and killed:
                kill(table.shard_actors[2], "SIGKILL")  # its updates (returning rows) sent, maybe run, not waited for
            outputs.append(out.numpy().tobytes())
        assert outputs[0] == outputs[1], step
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    assert len(fetches) == 3  # steps 0, 4 and 8; every other lookup took the prefetched rows
    if killed:
        return
    with et.no_grad():
        table.prefetch(batches[0])
        table(np.array([ROWS - 1]))  # another lookup drops them; a renorm or a load would too
        assert table(batches[0]).numpy().tobytes() == memory(batches[0]).numpy().tobytes()


# --- checkpoints ----------------------------------------------------------------------------

def test_a_checkpoint_loads_at_any_shard_count_and_as_one_table(tmp_path, rng):
    memory, table = pair(EmbeddingBag, ShardedEmbeddingBag, 2, mode="sum", padding_idx=5, max_norm=2.0)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    ids = rng.integers(0, ROWS, (8, 4))
    for layer, opt in zip((memory, table), opts):
        layer(ids).sum().backward()
        opt.step()
    table.save(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt"))[0] == "manifest.json" and len(os.listdir(tmp_path / "ckpt")) == 3
    local = EmbeddingBag.load(tmp_path / "ckpt")
    assert local.weight.numpy().tobytes() == memory.weight.numpy().tobytes() and local.config() == memory.config()
    for shards in (3, 1, 4):
        loaded = ShardedEmbeddingBag.load(tmp_path / "ckpt", shards=shards)
        assert loaded.shards == shards and loaded.config() == table.config()
        assert loaded.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    loaded.save(tmp_path / "ckpt")  # four shards over two: the files of the two do not stay
    assert len(os.listdir(tmp_path / "ckpt")) == 5
    again = ShardedEmbeddingBag.load(tmp_path / "ckpt", shards=3)
    opts = [Adam(local.parameters(), lr=0.05), Adam(again.parameters(), lr=0.05)]
    for layer, opt in zip((local, again), opts):  # training goes on from the checkpoint, bit for bit
        layer(ids[::-1]).sum().backward()
        opt.step()
    assert again.weight.numpy().tobytes() == local.weight.numpy().tobytes()


@pytest.mark.backend_independent
def test_what_is_not_a_sharded_checkpoint_raises_serialization_error(tmp_path):
    table = ShardedEmbedding.from_local(Embedding.from_pretrained(np.ones((20, 3))), shards=2)
    assert table.weight.requires_grad is False
    table.save(tmp_path / "e")
    assert ShardedEmbedding.load(tmp_path / "e").weight.requires_grad is False  # frozen stays frozen
    with pytest.raises(et.SerializationError, match="holds a Embedding layer, not EmbeddingBag"):
        ShardedEmbeddingBag.load(tmp_path / "e")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(et.SerializationError, match="not a sharded table checkpoint"):
        ShardedEmbedding.load(tmp_path / "empty")
    second = sorted(name for name in os.listdir(tmp_path / "e") if name.startswith("shard-00001"))[0]
    Embedding(7, 3).save(tmp_path / "e" / second)  # a shard replaced by another table
    with pytest.raises(et.SerializationError, match="does not hold shard 1"):
        ShardedEmbedding.load(tmp_path / "e")
    with pytest.raises(et.SerializationError, match="does not hold shard 1"):
        Embedding.load(tmp_path / "e")


# --- a shard's process dies -----------------------------------------------------------------

def kill(host, how):
    if how == "ray.kill":
        ray.kill(host, no_restart=False)
    else:
        os.kill(ray.get(host.pid.remote(), timeout=60), signal.SIGKILL)


@pytest.mark.backend_independent
@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_killed_shard_comes_back_exactly_and_its_call_completes(rng, monkeypatch, how):
    monkeypatch.setattr(et.tables.ray_shards, "SNAPSHOT_AFTER", 3)  # restores start from a later snapshot too
    memory, table = pair(Embedding, ShardedEmbedding, 3, max_norm=1.5)
    memory_other, other = pair(Embedding, ShardedEmbedding, 2)  # shares the hosts: restored on its next call
    layers = [(memory, table), (memory_other, other)]
    opts = [(Adam(a.parameters(), lr=0.05), Adam(b.parameters(), lr=0.05)) for a, b in layers]
    for step in range(6):
        if step == 4:  # after a snapshot (the 3rd change) and a change since
            kill(table.shard_actors[1], how)
        ids = np.minimum(rng.zipf(1.3, (4, 6)) - 1, ROWS - 1)
        for pair_layers, pair_opts in zip(layers, opts):
            outputs = []
            for layer, opt in zip(pair_layers, pair_opts):
                opt.zero_grad()
                out = layer(ids)
                (out * out).sum().backward()
                opt.step()
                outputs.append(out.numpy())
            assert outputs[0].tobytes() == outputs[1].tobytes(), step
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    assert other.weight.numpy().tobytes() == memory_other.weight.numpy().tobytes()


@ray.remote(num_cpus=0.1)
class Owner:
    def owned(self, value):
        return [ray.put(value)]  # a ref this actor owns: lost with it


@pytest.mark.backend_independent
def test_a_shard_whose_snapshot_was_lost_with_its_machine_says_so(rng):
    table = ShardedEmbedding(ROWS, DIM, shards=2)
    shards = et.tables.storage_of(table.weight)._shards
    owner = Owner.remote()
    snapshot = ray.get(shards._snapshots[1], timeout=60)
    shards._snapshots[1] = ray.get(owner.owned.remote(snapshot), timeout=60)[0]  # as if held on another machine
    ray.kill(owner)  # that machine is gone, and so is the shard's process
    kill(table.shard_actors[1], "SIGKILL")
    with pytest.raises(et.ShardLostError, match="snapshot was lost"):
        table(np.arange(ROWS))


@pytest.mark.backend_independent
def test_a_connection_cut_in_a_step_restores_the_shard_and_sends_it_again(rng, monkeypatch):
    memory, table = pair(Embedding, ShardedEmbedding, 2)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    updates, sent = [], et.tables.ray_shards.RayShards._sent

    def sending(self, calls):
        replies = sent(self, calls)
        for (shard, method, _), reply in zip(calls, replies):
            if method == "update" and shard == 1:
                updates.append(reply)
                if len(updates) == 3:  # sent, maybe applied, its answer never comes
                    self._hosts[1].channel.close()
        return replies

    monkeypatch.setattr(et.tables.ray_shards.RayShards, "_sent", sending)
    for step in range(5):
        outputs = step_all((memory, table), opts, np.minimum(rng.zipf(1.3, (4, 6)) - 1, ROWS - 1))
        assert outputs[0] == outputs[1], step
    assert len(updates) == 5
    with pytest.raises(et.tables.shard_channel.ChannelClosed):  # restored, then sent again
        updates[2].result(1)
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()


@pytest.mark.backend_independent
def test_after_a_change_failed_on_one_shard_the_table_refuses_every_call(rng, monkeypatch):
    table = ShardedEmbedding(ROWS, DIM, shards=2)
    opt = Adam(table.parameters(), lr=0.05)
    send = et.tables.ray_shards.RayShards.send

    def spoiling(self, calls, replays=None):  # shard 1 gets no gradient: its update fails there alone
        calls = [(k, m, (a[0], a[1], "spoiled", *a[3:]) if (m, k) == ("update", 1) else a) for k, m, a in calls]
        return send(self, calls, replays)

    monkeypatch.setattr(et.tables.ray_shards.RayShards, "send", spoiling)
    table(np.arange(ROWS)).sum().backward()
    opt.step()  # sent: its errors come with the next call
    with pytest.raises(Exception) as failed:
        table(np.arange(3))
    assert not isinstance(failed.value, et.ShardLostError)
    with pytest.raises(et.ShardLostError, match="failed on shard 1 .* no longer hold one table"):
        table(np.arange(3))
    with pytest.raises(et.ShardLostError, match="no longer hold one table"):
        opt.step()


# --- optimizer state dicts ------------------------------------------------------------------

def test_optimizer_state_dicts_hold_the_shards_state_and_load_into_them(rng):
    memory, table = pair(Embedding, ShardedEmbedding, 3)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]

    def train(steps):
        for _ in range(steps):
            ids = rng.integers(0, ROWS, 40)
            for layer, opt in zip((memory, table), opts):
                opt.zero_grad()
                layer(ids).sum().backward()
                opt.step()

    train(3)
    saved = [opt.state_dict() for opt in opts]
    assert saved[1]["state"][0].keys() == {"step", "exp_avg", "exp_avg_sq"}
    for name in ("exp_avg", "exp_avg_sq"):
        assert saved[1]["state"][0][name].numpy().tobytes() == saved[0]["state"][0][name].numpy().tobytes()
    train(2)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]  # a new optimizer: fresh state
    train(1)
    for opt in opts:  # back to the state after three steps
        opt.load_state_dict(saved[0])
    train(2)
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    assert opts[1].state_dict()["state"][0]["exp_avg"].numpy().tobytes() == \
        opts[0].state_dict()["state"][0]["exp_avg"].numpy().tobytes()


def test_dense_gradients_take_the_dense_rule_as_in_memory(rng):
    memory, table = pair(Embedding, ShardedEmbedding, 3)
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    x = rng.standard_normal((7, DIM)).astype(np.float32)
    for layer, opt in zip((memory, table), opts):  # the tied output layer: a dense gradient (SPEC §9)
        for _ in range(2):
            opt.zero_grad()
            (layer.as_linear(et.Tensor(x)) ** 2).sum().backward()
            opt.step()
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()


def test_state_of_untouched_shards_is_zeros_and_optimizers_keep_their_own(rng, monkeypatch, tmp_path):
    memory, table = pair(Embedding, ShardedEmbedding, 3)
    first = [SGD(memory.parameters(), lr=0.1, momentum=0.9), SGD(table.parameters(), lr=0.1, momentum=0.9)]
    second = [SGD(memory.parameters(), lr=0.2, momentum=0.5), SGD(table.parameters(), lr=0.2, momentum=0.5)]
    for step in range(4):  # two optimizers of one kind in turn: each keeps its own state
        ids = np.array([0]) if step == 0 else rng.integers(0, ROWS, 30)  # step 0: one shard's row only
        for layer, opt in zip((memory, table), first if step % 2 == 0 else second):
            opt.zero_grad()
            layer(ids).sum().backward()
            opt.step()
        if step == 0:
            buffers = [opt.state_dict()["state"][0]["momentum_buffer"].numpy() for opt in first]
            assert buffers[1].tobytes() == buffers[0].tobytes()
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    monkeypatch.chdir(tmp_path)  # a relative folder is this process's, not the shards' working directory
    table.save("relative")
    assert ShardedEmbedding.load("relative").weight.numpy().tobytes() == memory.weight.numpy().tobytes()


@pytest.mark.backend_independent
def test_a_shard_killed_while_rows_are_dealt_comes_back_exactly(rng, monkeypatch):
    monkeypatch.setattr(et.tables.sharded, "DEAL_ROWS", 100)
    memory, table = pair(Embedding, ShardedEmbedding, 2)
    sent = et.tables.ray_shards.RayShards.call
    puts = []

    def kills_after_two_chunks(self, calls, replays=None):
        if calls and calls[0][1] == "put":
            puts.append(1)
            if len(puts) == 3:
                kill(self.actors[1], "SIGKILL")
        return sent(self, calls, replays)

    monkeypatch.setattr(et.tables.ray_shards.RayShards, "call", kills_after_two_chunks)
    values = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    for layer in (memory, table):
        layer.load_state_dict({"weight": values})
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    assert len(puts) == 5


@pytest.mark.backend_independent
def test_a_save_cut_short_leaves_the_last_checkpoint_whole(tmp_path, rng, monkeypatch):
    table = ShardedEmbedding.from_local(Embedding.from_pretrained(rng.standard_normal((40, 3)), freeze=False), 2)
    table.save(tmp_path / "c")
    saved = table.weight.numpy()
    opt = SGD(table.parameters(), lr=1.0)
    table(np.arange(40)).sum().backward()
    opt.step()

    def dies(*args):
        raise KeyboardInterrupt  # the process stopped after the shards wrote, before the manifest

    with monkeypatch.context() as patch:
        patch.setattr(et.tables.sharded, "finish_writing", dies)
        with pytest.raises(KeyboardInterrupt):
            table.save(tmp_path / "c")
    assert Embedding.load(tmp_path / "c").weight.numpy().tobytes() == saved.tobytes()
    table.save(tmp_path / "c")  # the next save clears the files the cut one left
    assert len(os.listdir(tmp_path / "c")) == 3
    assert Embedding.load(tmp_path / "c").weight.numpy().tobytes() == table.weight.numpy().tobytes()


# --- file-backed shards ---------------------------------------------------------------------

FILE_OPTIONS = dict(padding_idx=4, max_norm=1.1, scale_grad_by_freq=True)
CACHE_BYTES = 2048  # a dozen rows with Adam's state: most steps evict and log rows, every commit folds


def step_all(layers, optimizers, ids):
    """A training step of each layer with its optimizer on `ids`; their outputs' bytes."""
    outputs = []
    for layer, opt in zip(layers, optimizers):
        opt.zero_grad()
        out = layer(ids)
        (out * out).sum().backward()
        opt.step()
        outputs.append(out.numpy().tobytes())
    return outputs


def file_pair(folder, shards=2):
    et.manual_seed(7)
    memory = Embedding(ROWS, DIM, sparse=True, **FILE_OPTIONS)
    et.manual_seed(7)
    return memory, ShardedEmbedding(ROWS, DIM, shards=shards, path=folder, cache_bytes=CACHE_BYTES, **FILE_OPTIONS)


def zipf_batches(rng, count):
    return [np.minimum(rng.zipf(1.3, (5, 9)) - 1, ROWS - 1) for _ in range(count)]


@pytest.mark.parametrize("optimizer, hyper", [(Adam, dict(lr=0.05)), (RowWiseAdagrad, dict(lr=0.2))],
                         ids=["Adam", "RowWiseAdagrad"])
def test_file_backed_shards_train_as_in_memory_and_reopen_at_the_last_commit(tmp_path, rng, optimizer, hyper):
    memory, table = file_pair(tmp_path / "t", shards=3)
    assert table.path == str(tmp_path / "t") and table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    opts = [optimizer(memory.parameters(), **hyper), optimizer(table.parameters(), **hyper)]
    batches = zipf_batches(rng, 9)
    for step, ids in enumerate(batches[:6]):
        mine, theirs = step_all((memory, table), opts, ids)
        assert mine == theirs, step
        if step == 3:
            table.commit()
            committed = memory.weight.numpy().copy(), copy.deepcopy(opts[0].state_dict())
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    assert opts[1].state_dict()["state"][0].keys() == {"step"}  # the buffers stay in the shards' files
    del table, opts  # the shards' files close with the table
    gc.collect()
    reopened = ShardedEmbedding.open(tmp_path / "t", cache_bytes=CACHE_BYTES)  # the steps after the commit: gone
    assert reopened.config() == memory.config() and reopened.shards == 3
    assert reopened.weight.numpy().tobytes() == committed[0].tobytes()
    again = Embedding.from_pretrained(committed[0], freeze=False, sparse=True, **FILE_OPTIONS)
    opts = [optimizer(again.parameters(), **hyper), optimizer(reopened.parameters(), **hyper)]
    opts[0].load_state_dict(committed[1])  # the reopened shards resume their committed state themselves
    for step, ids in enumerate(batches[6:]):
        mine, theirs = step_all((again, reopened), opts, ids)
        assert mine == theirs, step
    assert reopened.weight.numpy().tobytes() == again.weight.numpy().tobytes()
    assert Embedding.load(tmp_path / "t").weight.numpy().tobytes() == committed[0].tobytes()


def killing(monkeypatch, method, shard, count, how="before"):
    """Kill `shard`'s process at the `count`-th call of `method` on the table's shards (sent
    waiting for it or not): just before sending it, or (``how="during"``) a moment after;
    returns the kills made."""
    seen, kills = [], []

    def killer(sent):
        def calls_and_kills(self, calls, replays=None):
            if calls and calls[0][1] == method:
                seen.append(1)
                if len(seen) == count:
                    pid = ray.get(self.actors[shard].pid.remote(), timeout=60)
                    kills.append(pid)
                    if how == "before":
                        os.kill(pid, signal.SIGKILL)
                    else:
                        threading.Timer(0.002, os.kill, (pid, signal.SIGKILL)).start()
            return sent(self, calls, replays)
        return calls_and_kills

    for name in ("call", "send"):
        monkeypatch.setattr(et.tables.ray_shards.RayShards, name, killer(getattr(et.tables.ray_shards.RayShards, name)))
    return kills


KILLS = {"while created": ("commit", 1, "before"), "in a step": ("update", 6, "before"),
         "a moment into a commit": ("commit", 2, "during"), "in a fold": ("fold", 2, "during")}


@pytest.mark.backend_independent
@pytest.mark.parametrize("when", list(KILLS))
def test_a_file_shard_killed_at_any_moment_changes_nothing(tmp_path, rng, monkeypatch, when):
    method, count, how = KILLS[when]
    kills = killing(monkeypatch, method, 1, count, how)
    memory, table = file_pair(tmp_path / "t")
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    for step, ids in enumerate(zipf_batches(rng, 8)):
        mine, theirs = step_all((memory, table), opts, ids)
        assert mine == theirs, step
        if step == 3:
            table.commit()
    assert len(kills) == 1
    assert table.weight.numpy().tobytes() == memory.weight.numpy().tobytes()
    table.commit()
    del table, opts  # the shards' files close with the table
    gc.collect()
    assert ShardedEmbedding.open(tmp_path / "t").weight.numpy().tobytes() == memory.weight.numpy().tobytes()


@pytest.mark.backend_independent
@pytest.mark.parametrize("cut", ["before the commit point", "after it"])
def test_a_commit_the_caller_did_not_finish_reopens_as_the_last_commit_point(tmp_path, rng, monkeypatch, cut):
    memory, table = file_pair(tmp_path / "t")
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    batches = zipf_batches(rng, 4)
    for ids in batches[:2]:
        step_all((memory, table), opts, ids)
    table.commit()
    first = memory.weight.numpy().copy()
    for ids in batches[2:]:
        step_all((memory, table), opts, ids)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the caller's process stopped here

    if cut == "before the commit point":  # every shard committed, commit.json not replaced
        monkeypatch.setattr(et.tables.sharded_files, "write_commit", dies)
    else:
        monkeypatch.setattr(et.tables.ray_shards.RayShards, "remade", dies)
    with pytest.raises(KeyboardInterrupt):
        table.commit()
    del table, opts  # the shards' files close with the table
    gc.collect()
    expected = first if cut == "before the commit point" else memory.weight.numpy()
    assert ShardedEmbedding.open(tmp_path / "t").weight.numpy().tobytes() == expected.tobytes()


@pytest.mark.backend_independent
def test_commits_tried_again_after_failing_keep_the_last_completed_one(tmp_path, rng, monkeypatch):
    memory, table = file_pair(tmp_path / "t")
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    batches = zipf_batches(rng, 3)
    step_all((memory, table), opts, batches[0])
    table.commit()
    first = memory.weight.numpy().copy()

    def fails(*args, **kwargs):
        raise OSError("disk full")  # every shard committed, commit.json not replaced

    monkeypatch.setattr(et.tables.sharded_files, "write_commit", fails)
    for ids in batches[1:]:  # each shard commits the same number twice
        step_all((memory, table), opts, ids)
        with pytest.raises(OSError, match="disk full"):
            table.commit()
    del table, opts  # the caller stops there
    gc.collect()
    monkeypatch.undo()
    assert ShardedEmbedding.open(tmp_path / "t").weight.numpy().tobytes() == first.tobytes()


@pytest.mark.backend_independent
def test_a_folder_in_use_refuses_another_table_and_a_failed_open_holds_no_lock(tmp_path, rng):
    memory, table = file_pair(tmp_path / "t")
    before = table.weight.numpy()
    with pytest.raises(et.InvalidArgumentError, match="open for writing elsewhere"):
        ShardedEmbedding(ROWS, DIM, shards=2, path=tmp_path / "t")
    with pytest.raises(et.InvalidArgumentError, match="open for writing elsewhere"):
        ShardedEmbedding.open(tmp_path / "t")
    with pytest.raises(et.InvalidArgumentError, match="is open for writing: close that table"):
        Embedding.create(tmp_path / "t" / "rows-00000.safetensors", ROWS // 2, DIM)  # locked by its shard process
    assert table.weight.numpy().tobytes() == before.tobytes()
    del table
    gc.collect()
    manifest = tmp_path / "t" / "rows-00001.safetensors.state" / "manifest.json"
    saved = manifest.read_bytes()
    manifest.write_bytes(b"{")
    with pytest.raises(et.SerializationError):
        ShardedEmbedding.open(tmp_path / "t")  # shard 0 opened, shard 1 could not: shard 0 lets its files go
    manifest.write_bytes(saved)
    assert ShardedEmbedding.open(tmp_path / "t").weight.numpy().tobytes() == before.tobytes()


@pytest.mark.backend_independent
def test_file_backed_shards_refuse_what_files_cannot_hold(tmp_path, rng):
    memory, table = file_pair(tmp_path / "t")
    opts = [Adam(memory.parameters(), lr=0.05), Adam(table.parameters(), lr=0.05)]
    step_all((memory, table), opts, zipf_batches(rng, 1)[0])
    before = table.weight.numpy()
    state = opts[0].state_dict()
    fresh = Adam(table.parameters(), lr=0.05)
    fresh.load_state_dict(state)
    table(np.arange(5)).sum().backward()
    with pytest.raises(et.InvalidArgumentError, match="kept in its shards' files"):
        fresh.step()
    assert table.weight.numpy().tobytes() == before.tobytes()
    os.makedirs(tmp_path / "empty")
    with pytest.raises(et.SerializationError, match="commit.json"):
        ShardedEmbedding.open(tmp_path / "empty")
    with pytest.raises(et.SerializationError, match="holds a Embedding layer, not EmbeddingBag"):
        ShardedEmbeddingBag.open(tmp_path / "t")


@pytest.mark.backend_independent
def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'embtable\[ray\]'"):
        ShardedEmbedding(10, 2)


@pytest.mark.backend_independent
@settings(max_examples=80, deadline=None)
@given(rows=st.integers(1, 5000), data=st.data())
def test_distinct_rows_are_numpys_unique_with_its_inverse(rows, data):
    distinct = et.tables.sharded.DistinctRows(rows)
    for _ in range(3):  # the bitmap is left clean for the next call
        ids = np.array(data.draw(st.lists(st.integers(0, rows - 1), max_size=200)), np.int64)
        found, positions = distinct(ids)
        expected, inverse = np.unique(ids, return_inverse=True)
        assert found.dtype == np.int64 and positions.dtype == np.int64
        assert np.array_equal(found, expected) and np.array_equal(positions, inverse.reshape(-1))
