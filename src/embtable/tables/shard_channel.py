"""A direct connection between a sharded table's caller and a shard process, for the calls
that move rows (lookups, renorms, optimizer steps): one TCP socket per caller and shard
host, each message a small pickle with its arrays sent beside it as raw bytes (pickle
protocol 5, buffers out of band), calls answered in the order they were sent.

Ray still starts, restarts and snapshots the hosts (`ray_shards.py`); this moves the
bytes of every step, where a Ray call with a megabyte of rows costs several milliseconds of
object-store traffic and a socket round trip a fraction of one. A connection starts with
the host's secret token (handed to the caller through Ray), checked before anything sent
on it is unpickled. TCP keepalives end a connection whose peer's machine is gone.
"""

from __future__ import annotations

import collections
import hmac
import pickle
import secrets
import socket
import struct
import threading
import time
import traceback
from typing import Any, Callable

HEADER = struct.Struct("<qq")  # a message's buffer count and pickle length; then each buffer's length
TOKEN_BYTES = 16
CONNECT_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 30.0  # a connection that sends no token by then is closed
KEEPALIVE = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 5}  # a silent peer is gone after ~15 s
UNACKNOWLEDGED_MS = 30_000  # TCP_USER_TIMEOUT: bytes sent and not acknowledged by then end the connection

Dumps = Callable[..., bytes]  # pickle.dumps, or a pickler like it (cloudpickle: classes by value)


class ChannelClosed(ConnectionError):
    """The connection to a shard host broke (its process died, or the network between): the
    calls waiting on it have no result."""


class Message:
    """A message encoded for the wire: its pickle (with the header) and its arrays' bytes.
    Encoding first means a message that cannot be pickled raises before anything is sent."""

    def __init__(self, message: Any, dumps: Dumps = pickle.dumps) -> None:
        buffers: list[pickle.PickleBuffer] = []
        data = dumps(message, protocol=5, buffer_callback=buffers.append)
        self.raws = [buffer.raw() for buffer in buffers]
        self.head = (HEADER.pack(len(self.raws), len(data))
                     + struct.pack(f"<{len(self.raws)}q", *(raw.nbytes for raw in self.raws)) + data)

    def write(self, connection: socket.socket) -> None:
        connection.sendall(self.head)
        for raw in self.raws:
            connection.sendall(raw)


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
    waiting for them. `ChannelClosed` if it cannot connect."""

    def __init__(self, address: tuple[str, int], token: bytes) -> None:
        self.address = address
        self.token = token
        try:
            self._socket = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
            self._socket.settimeout(None)
            _tune(self._socket)
            self._socket.sendall(token)
        except OSError as error:
            raise ChannelClosed(f"cannot connect to the shard host at {address}: {error}") from error
        self._waiting: collections.deque[Reply] = collections.deque()  # sent, in order, not yet answered
        self._sending = threading.Lock()  # a call's place in `_waiting` is its place on the wire
        self._broken: str | None = None  # why the connection ended
        threading.Thread(target=self._read, name=f"shard channel {address}", daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._broken is not None

    def send(self, message: Message) -> Reply:
        """Send a call, encoded as ``Message((key, generation, method, args))`` (see
        `ChannelServer`); its reply (failed with `ChannelClosed` if the connection is or
        gets broken)."""
        reply = Reply()
        with self._sending:
            if self._broken is not None:
                reply.settle(False, ChannelClosed(self._broken))
                return reply
            self._waiting.append(reply)  # failed by the reader if the connection breaks from here on
            try:
                message.write(self._socket)
            except BaseException as error:  # a partial write leaves the stream unreadable: end it
                self._end(f"sending failed: {error!r}")
                if not isinstance(error, OSError):
                    raise
        return reply

    def close(self) -> None:
        """End the connection; calls still waiting fail with `ChannelClosed`."""
        with self._sending:
            self._end("closed by the caller")

    def _end(self, why: str) -> None:
        """Mark the connection ended (the reader then fails every call waiting on it)."""
        if self._broken is None:
            self._broken = f"the connection to the shard host at {self.address} ended: {why}"
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the reader
        except OSError:
            pass

    def _read(self) -> None:
        """Hand each answer to its call, in order; when the connection ends, fail the rest.
        Only this thread takes calls out of `_waiting`, so no answer reaches another call."""
        why = "the host closed it"
        try:
            while True:
                data, buffers = receive_frame(self._socket)
                reply = self._waiting.popleft()
                try:
                    ok, value = pickle.loads(data, buffers=buffers)
                except Exception as error:  # noqa: BLE001 -- that call's answer cannot be read here
                    ok, value = False, RuntimeError(f"the shard's answer could not be unpickled here: {error!r}")
                reply.settle(ok, value)
        except Exception as error:  # noqa: BLE001 -- whatever ends the reading ends the connection
            why = repr(error)
        with self._sending:
            self._end(why)
            while self._waiting:
                self._waiting.popleft().settle(False, ChannelClosed(self._broken))
        self._socket.close()


class ChannelServer:
    """Serves callers on every interface of this machine, at `port`: each connection on a
    thread of its own, which checks the connection's first bytes against `token`, then
    answers each call with ``run(key, generation, method, args)`` (what it returns, or what
    it raised)."""

    def __init__(self, run: Callable[[str, int, str, tuple], Any]) -> None:
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self._run = run
        self._listener = socket.create_server(("0.0.0.0", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="shard channel server", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # out of file descriptors, say: try again shortly
                time.sleep(0.1)
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                _tune(connection)
                connection.settimeout(HANDSHAKE_TIMEOUT_S)
                if not hmac.compare_digest(bytes(_received(connection, TOKEN_BYTES)), self.token):
                    return
                connection.settimeout(None)
                while True:
                    self._answer(connection, *receive_frame(connection))
            except (OSError, EOFError):
                return  # the caller went away

    def _answer(self, connection: socket.socket, data: bytearray, buffers: list[bytearray]) -> None:
        """Run one call and send its answer back, keeping nothing of it once sent (a reply
        may be a view of a shard's file mapping, which must be free to close)."""
        try:
            key, generation, method, args = pickle.loads(data, buffers=buffers)
            answer = Message((True, self._run(key, generation, method, args)))
        except Exception as error:  # noqa: BLE001 -- the caller's to raise
            error.add_note("in the shard process:\n" + "".join(traceback.format_exception(error)))
            answer = Message((False, _picklable(error)))
        answer.write(connection)


def receive_frame(connection: socket.socket) -> tuple[bytearray, list[bytearray]]:
    """The next message's pickle and its arrays' bytes, as `Message.write` sent them
    (unpickled by the receiver: a message it cannot unpickle leaves the stream whole)."""
    count, length = HEADER.unpack(_received(connection, HEADER.size))
    sizes = struct.unpack(f"<{count}q", _received(connection, 8 * count))
    data = _received(connection, length)
    return data, [_received(connection, size) for size in sizes]


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


def _tune(connection: socket.socket) -> None:
    """No delay for small messages; keepalives and a limit on unacknowledged bytes, so a
    peer whose machine is gone ends the connection instead of leaving it waiting."""
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE.items():
        if hasattr(socket, option):
            connection.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, UNACKNOWLEDGED_MS)


def _picklable(error: Exception) -> Exception:
    """`error`, or a `RuntimeError` saying what it was where it does not survive a pickle
    round trip."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 -- any failure to pickle or unpickle
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
