"""The channel between a sharded table's caller and its shard processes
(`tables/shard_channel.py`), and the shard host's generations, without Ray: answers reach
the calls they belong to, whatever fails on the way."""

import threading

import numpy as np
import pytest

from embtable.tables.shard import MemoryShard, MissingShard, ShardHost
from embtable.tables.shard_channel import Channel, ChannelClosed, ChannelServer, Message


class Unreadable(Exception):
    """Pickles, but cannot be unpickled (its constructor takes two arguments)."""

    def __init__(self, first, second):
        super().__init__(f"{first} {second}")


def run(key, generation, method, args):
    if method == "echo":
        return key, generation, args
    if method == "rows":
        return np.arange(args[0] * 3, dtype=np.float32).reshape(args[0], 3)
    if method == "unreadable":
        raise Unreadable("no", "way")
    if method == "unpicklable":
        return threading.Lock()
    raise KeyError(method)


@pytest.fixture
def server():
    return ChannelServer(run)


def call(channel, method, *args, key="k", generation=0):
    return channel.send(Message((key, generation, method, args)))


def test_answers_come_back_in_order_with_their_arrays(server):
    channel = Channel(("127.0.0.1", server.port), server.token)
    replies = [call(channel, "rows", n) for n in range(1, 50)] + [call(channel, "echo", "x", key="other")]
    for n, reply in enumerate(replies[:-1], start=1):
        assert np.array_equal(reply.result(10), np.arange(n * 3, dtype=np.float32).reshape(n, 3))
    assert replies[-1].result(10) == ("other", 0, ("x",))
    big = np.random.default_rng(0).random((100_000, 8))  # several MB, out of band
    assert np.array_equal(call(channel, "echo", big).result(10)[2][0], big)


def test_errors_reach_their_own_call_and_the_channel_goes_on(server):
    channel = Channel(("127.0.0.1", server.port), server.token)
    with pytest.raises(TypeError):  # cannot be pickled: raised before anything is sent
        call(channel, "echo", threading.Lock())
    failing = [call(channel, "nope"), call(channel, "unreadable"), call(channel, "unpicklable")]
    after = call(channel, "echo", 7)
    with pytest.raises(KeyError, match="nope"):
        failing[0].result(10)
    with pytest.raises(RuntimeError, match="Unreadable: no way"):  # as text: it would not unpickle here
        failing[1].result(10)
    with pytest.raises(TypeError, match="cannot pickle"):
        failing[2].result(10)
    assert after.result(10) == ("k", 0, (7,)) and not channel.closed


def test_calls_from_many_threads_get_their_own_answers(server):
    channel = Channel(("127.0.0.1", server.port), server.token)
    wrong = []

    def calls(thread):
        for n in range(200):
            if call(channel, "echo", thread, n).result(30) != ("k", 0, (thread, n)):
                wrong.append((thread, n))

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_closed_or_refused_channel_fails_its_calls_with_channel_closed(server):
    channel = Channel(("127.0.0.1", server.port), server.token)
    waiting = [call(channel, "rows", 1000) for _ in range(20)]
    channel.close()
    for reply in waiting:  # answered before the close, or failed by it
        try:
            reply.result(10)
        except ChannelClosed:
            pass
    with pytest.raises(ChannelClosed, match="closed by the caller"):
        call(channel, "echo", 1).result(10)
    stranger = Channel(("127.0.0.1", server.port), bytes(16))  # the wrong token: the host hangs up
    with pytest.raises(ChannelClosed):
        call(stranger, "echo", 1).result(10)
    with pytest.raises(ChannelClosed, match="cannot connect"):
        Channel(("127.0.0.1", 1), server.token)


def test_a_host_refuses_calls_for_another_generation_of_a_shard():
    host = ShardHost()
    host.create("t", 3, MemoryShard, 4, 2, np.float32)
    assert host.call("t", 3, "gather", np.array([1, 2])).shape == (2, 2)
    for generation in (2, 4):  # sent before its restoration, or by nobody
        with pytest.raises(MissingShard, match="generation"):
            host.call("t", generation, "gather", np.array([1]))
    reply = call(Channel(("127.0.0.1", host.channel_port), host.channel_token), "gather", np.array([0]),
                 key="t", generation=2)
    with pytest.raises(MissingShard):
        reply.result(10)
