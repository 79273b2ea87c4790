"""A direct connection between a sharded table's caller and a shard process, for the calls
that move rows (lookups, renorms, optimizer steps): one TCP socket per caller and shard
host, each message a small pickle with its arrays sent beside it as raw bytes (pickle
protocol 5, buffers out of band), calls answered in the order they were sent.

Ray still starts, restarts and snapshots the hosts (`ray_shards.py`); this moves the
bytes of every step, where a Ray call with a megabyte of rows costs several milliseconds of
object-store traffic and a socket round trip a fraction of one. A connection starts with
the host's secret token (handed to the caller through Ray), checked before anything sent
on it is unpickled.
"""

from __future__ import annotations

import collections
import hmac
import pickle
import secrets
import socket
import struct
import threading
from typing import Any, Callable

HEADER = struct.Struct("<qq")  # a message's buffer count and pickle length; then each buffer's length
TOKEN_BYTES = 16
CONNECT_TIMEOUT_S = 30.0


class ChannelClosed(ConnectionError):
    """The connection to a shard host broke (its process died, or the network between): the
    calls waiting on it have no result."""


class Reply:
    """The result of a call sent on a `Channel`, once its answer has arrived."""

    def __init__(self) -> None:
        self._arrived = threading.Event()
        self._ok = False
        self._value: Any = None

    def settle(self, ok: bool, value: Any) -> None:
        """The call returned `value` (`ok`) or raised it."""
        self._ok, self._value = ok, value
        self._arrived.set()

    def result(self, timeout: float) -> Any:
        """What the call returned; raises what it raised, `ChannelClosed` if its connection
        broke first, or `TimeoutError` after `timeout` seconds."""
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"a shard call had no answer within {timeout:.0f} s")
        if not self._ok:
            raise self._value
        return self._value


class Channel:
    """The caller's connection to the shard host listening at `address` (`ChannelServer`),
    opened with its `token`. `send` writes a call and returns its `Reply` at once; a thread
    of its own reads the answers as they arrive, so the caller may send any number before
    waiting for them."""

    def __init__(self, address: tuple[str, int], token: bytes) -> None:
        self.address = address
        self._socket = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
        self._socket.settimeout(None)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.sendall(token)
        self._waiting: collections.deque[Reply] = collections.deque()  # sent, in order, not yet answered
        self._sending = threading.Lock()  # a call's place in `_waiting` is its place on the wire
        self._broken: ChannelClosed | None = None
        threading.Thread(target=self._read, name=f"shard channel {address}", daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._broken is not None

    def send(self, key: str, method: str, args: tuple) -> Reply:
        """Send shard `key` the call ``method(*args)``; its reply (failed with
        `ChannelClosed` if the connection is broken)."""
        reply = Reply()
        with self._sending:
            broken = self._broken
            if broken is None:
                self._waiting.append(reply)  # failed by `_break` if the connection breaks from here on
                try:
                    send_message(self._socket, (key, method, args))
                except OSError as error:
                    self._break(error)
        if broken is not None:
            reply.settle(False, broken)
        return reply

    def close(self) -> None:
        """Close the connection; calls still waiting fail with `ChannelClosed`."""
        self._break(ConnectionAbortedError("closed by the caller"))

    def _read(self) -> None:
        try:
            while True:
                ok, value = receive_message(self._socket)
                self._waiting.popleft().settle(ok, value)
        except Exception as error:  # noqa: BLE001 -- whatever ends the reading breaks the connection
            self._break(error)

    def _break(self, error: BaseException) -> None:
        """Mark the connection broken by `error` and fail every call waiting on it."""
        if self._broken is None:
            self._broken = ChannelClosed(f"the connection to the shard host at {self.address} broke: {error}")
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._socket.close()
        while self._waiting:
            try:
                self._waiting.popleft().settle(False, self._broken)
            except IndexError:  # emptied by another thread meanwhile
                break


class ChannelServer:
    """Serves callers on every interface of this machine, at `port`: each connection on a
    thread of its own, which checks the connection's first bytes against `token`, then
    answers each call with ``run(key, method, args)`` (what it returns, or what it raised)."""

    def __init__(self, run: Callable[[str, str, tuple], Any]) -> None:
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self._run = run
        self._listener = socket.create_server(("0.0.0.0", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="shard channel server", daemon=True).start()

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                if not hmac.compare_digest(bytes(_received(connection, TOKEN_BYTES)), self.token):
                    return
                while True:
                    self._answer(connection, *receive_message(connection))
            except (OSError, EOFError):
                return  # the caller went away

    def _answer(self, connection: socket.socket, key: str, method: str, args: tuple) -> None:
        """Run one call and send its answer back, keeping nothing of it once sent (a reply
        may be a view of a shard's file mapping, which must be free to close)."""
        try:
            reply = (True, self._run(key, method, args))
        except Exception as error:  # noqa: BLE001 -- the caller's to raise
            reply = (False, _picklable(error))
        send_message(connection, reply)


def send_message(connection: socket.socket, message: Any) -> None:
    """Write `message` (picklable): its pickle, then the bytes of its contiguous arrays."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    connection.sendall(HEADER.pack(len(raws), len(data)) + struct.pack(f"<{len(raws)}q", *(raw.nbytes for raw in raws))
                       + data)
    for raw in raws:
        connection.sendall(raw)


def receive_message(connection: socket.socket) -> Any:
    """The next message `send_message` wrote (its arrays over the bytes received, no copy)."""
    count, length = HEADER.unpack(_received(connection, HEADER.size))
    sizes = struct.unpack(f"<{count}q", _received(connection, 8 * count))
    data = _received(connection, length)
    return pickle.loads(data, buffers=[_received(connection, size) for size in sizes])


def _received(connection: socket.socket, count: int) -> bytearray:
    """The next `count` bytes; `EOFError` if the connection ends first."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        arrived = connection.recv_into(view[got:])
        if arrived == 0:
            raise EOFError("the connection ended")
        got += arrived
    return buffer


def _picklable(error: Exception) -> Exception:
    """`error`, or a `RuntimeError` saying what it was where it cannot be pickled."""
    try:
        pickle.dumps(error)
    except Exception:  # noqa: BLE001 -- any failure to pickle
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
