"""`RayShards`: the shards of one table on Ray actors — the one module that imports Ray —
and their restoration when a shard's process dies.

A shard process is a `ShardHost` actor, restarted by Ray (``max_restarts=-1``) when it dies,
empty. To bring a table's shard back exactly, the caller keeps, per shard, a snapshot of
its rows and optimizer state in Ray's object store (owned by the caller: it outlives the
shard's process, not the loss of the machine whose object store holds it) and every call
that changed the shard since; restoring is re-creating the shard from the snapshot (zeros
before the first) and replaying those calls, which are deterministic. The call that met
the failure is then sent again, so it completes with the result it would have had.
A shard is snapshotted again once the changes kept for it take as many bytes as its last
snapshot (or `SNAPSHOT_AFTER` changes pile up): their memory is a copy of each shard in the
object store, plus at most about as much again in the caller, and taking a snapshot costs
no more on average than keeping the changes did.
Shards in files are not snapshotted: they are restored from their last commit (`remade`),
and the caller keeps their changes since (every step's gradients) until the next one.

Ray carries what makes, restores and snapshots a shard; every other call (lookups, steps,
renorms: the bytes of every batch) goes over a direct connection to the host
(`shard_channel.py`), one per caller and host, which a Ray call costs many times over. A
broken connection counts as a dead process: the shard is restored and the call sent again.
"""

from __future__ import annotations

import os
import time
import uuid
import weakref
from typing import Any, Callable, Sequence, Union

import numpy as np

from ..errors import ShardLostError
from .shard import MissingShard, ShardHost
from .shard_channel import Channel, ChannelClosed, Message, Reply

CALL_TIMEOUT_S = 600.0  # the longest a call waits for its shards, restorations included
SNAPSHOT_AFTER = 4096  # changes replayed at most to restore a shard: then it is snapshotted again
SNAPSHOT_SHARE = 1.0  # ... or once its changes kept take this share of its last snapshot's bytes
RETRY_PAUSE_S = 0.2  # between tries to reach a host that is restarting
MAX_RESTORES = 3  # a call whose shard dies again after this many restorations fails
CHANGES = frozenset({"put", "read", "put_state", "update", "renorm"})  # what a restoration replays

Replay = Union[tuple, Callable[[], tuple]]  # a change's args, or what makes them again
Maker = tuple  # a Shard class and its args: what makes a shard (ShardHost.create)


class Sent:
    """Calls sent without waiting (`RayShards.send`): their results, once waited for (None
    before, or if they failed)."""

    def __init__(self) -> None:
        self.results: list[Any] | None = None


class RayShards:
    """The shards of one table, each on a `ShardHost` actor of the Ray cluster this process
    is connected to (a local one, started on first use, when there is none). Hosts are
    shared by the tables of a process that reserve the same CPUs: shard k of every table is
    on host k. Dropping this object drops its shards from their hosts."""

    def __init__(self, makers: Sequence[Maker], num_cpus: float, *, snapshots: bool = True) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("sharded tables need Ray: pip install 'embtable[ray]'") from None

        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        self._ray = ray
        self._hosts = _hosts(ray, len(makers), num_cpus)
        self.actors = [host.actor for host in self._hosts]
        self._key = uuid.uuid4().hex
        self._dumps = ray.cloudpickle.dumps  # as Ray pickles: a rule's class defined in a script goes by value
        self._makers = list(makers)
        self._generations = [0] * len(makers)  # each shard's count of restorations (calls carry it)
        self._snapshotted = snapshots
        self._snapshots: list[Any] = [None] * len(makers)  # a ref to each shard's last snapshot (None: as made)
        self._changes: list[list[tuple[str, Replay]]] = [[] for _ in makers]  # each shard's changes since
        self._kept_bytes = [0] * len(makers)  # the bytes of the arrays in them
        self._snapshot_bytes = [0] * len(makers)  # of each shard's last snapshot (0: none)
        self._pending: list[tuple[Sequence[tuple[int, str, tuple]], list[Any], Any, Sent]] = []  # not waited for
        self._failed_change: tuple[int, Exception] | None = None  # a change that failed on a shard: no table now
        self._dropped = weakref.finalize(self, _drop, ray, _connection(ray), list(self.actors), self._key)
        try:
            ray.get([host.create.remote(self._key, 0, *maker) for host, maker in zip(self.actors, self._makers)],
                    timeout=CALL_TIMEOUT_S)
            for host in self._hosts:
                host.connect(ray, time.monotonic() + CALL_TIMEOUT_S)
        except BaseException:
            self.close()  # the shards made (a file shard holds its file's lock) go with the one that failed
            raise

    def close(self) -> None:
        """Drop the shards from their hosts now (done anyway once this object is collected):
        a file shard's files close, releasing their locks."""
        self._dropped()

    def call(self, calls: Sequence[tuple[int, str, tuple]], replays: Sequence[Replay | None] | None = None
             ) -> list[Any]:
        """Run each ``(shard, method, args)`` at once; their results, in order. A shard
        whose process died is restored and its call sent again. A change (`CHANGES`) is
        kept for restorations with its args, or with what its `replays` entry gives (a
        function making the args again, where keeping them would cost memory). Every call
        is waited for before an error is raised, so the changes that did happen are kept.
        Once a change failed on a shard (its error raised), every later call raises
        `ShardLostError`: the shards no longer hold one table (some took the change)."""
        self.settle()
        self._refuse_after_failed_change()
        return self._finished(calls, self._sent(calls), replays, set())

    def send(self, calls: Sequence[tuple[int, str, tuple]], replays: Sequence[Replay | None] | None = None
             ) -> Sent:
        """Send `calls` as `call` does, without waiting for them: the next `call` waits for
        them (and any sent before) first, restoring shards as `call` does, and raises their
        error, if any; their results are then in the `Sent` returned. A shard runs calls in
        the order they were sent, so later calls see their changes; meanwhile the caller
        goes on with its work."""
        self._refuse_after_failed_change()
        sent = Sent()
        self._pending.append((calls, self._sent(calls), replays, sent))
        return sent

    def settle(self) -> None:
        """Wait for the calls `send` sent, in the order sent. Once a shard was restored,
        its later calls are sent again even if they completed: they ran on the process
        that died, not on the restored shard."""
        restored: set[int] = set()
        failure: Exception | None = None
        while self._pending:
            calls, futures, replays, sent = self._pending.pop(0)
            try:
                sent.results = self._finished(calls, futures, replays, restored)
            except Exception as error:  # noqa: BLE001 -- raised once every call sent has ended
                failure = failure or error
        if failure is not None:
            raise failure

    def _finished(self, calls: Sequence[tuple[int, str, tuple]], futures: list[Any],
                  replays: Sequence[Replay | None] | None, restored: set[int]) -> list[Any]:
        """The results of `calls`, sent as `futures` (see `call`); `restored` names the
        shards restored since they were sent, and gains those restored now."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        results: list[Any] = []
        failure: Exception | None = None
        for number, ((shard, method, args), future) in enumerate(zip(calls, futures)):
            try:
                if shard in restored:
                    future = self._send(shard, method, args)
                results.append(self._completed(shard, method, args, future, deadline, restored))
            except Exception as error:  # noqa: BLE001 -- raised once every call has ended
                failure = failure or error
                if method in CHANGES and self._failed_change is None:
                    self._failed_change = (shard, error)
                continue
            if method in CHANGES:
                replay = replays[number] if replays is not None and replays[number] is not None else args
                self._changes[shard].append((method, replay))
                self._kept_bytes[shard] += 0 if callable(replay) else _nbytes(replay)
        if failure is not None:
            raise failure
        due = [shard for shard, changes in enumerate(self._changes)
               if len(changes) >= SNAPSHOT_AFTER
               or 0 < self._snapshot_bytes[shard] * SNAPSHOT_SHARE <= self._kept_bytes[shard]]
        if due and not self._pending:  # (else once the last one sent has ended)
            self.snapshot(due)
        return results

    def _refuse_after_failed_change(self) -> None:
        if self._failed_change is not None:
            shard, error = self._failed_change
            cause = getattr(error, "cause", None) or error  # a shard's own error, not Ray's wrapping of it
            raise ShardLostError(f"a change failed on shard {shard} ({type(cause).__name__}, raised before), and "
                                 f"other shards may have taken it: the shards no longer hold one table; reopen it "
                                 f"at its last commit or load a checkpoint") from error

    def remade(self, makers: Sequence[Maker]) -> None:
        """From now on, restore each shard by ``ShardHost.create(key, generation, *maker)`` alone: its
        changes so far are in what that makes (a commit of file shards made them durable)."""
        self.settle()
        self._makers = list(makers)
        self._snapshots = [None] * len(makers)
        self._changes = [[] for _ in makers]
        self._kept_bytes = [0] * len(makers)

    def snapshot(self, shards: Sequence[int] | None = None) -> None:
        """Snapshot `shards` (all of them by default) into the object store, all at once:
        restoring one then starts there. One that dies meanwhile is restored and keeps its old snapshot
        and changes. Nothing for shards made without snapshots: they are restored from
        what they were last `remade` from, and their changes since."""
        self.settle()
        if not self._snapshotted:
            return
        deadline = time.monotonic() + CALL_TIMEOUT_S
        shards = range(len(self.actors)) if shards is None else shards
        taken = [self.actors[k].call.options(num_returns=2).remote(self._key, self._generations[k], "snapshot")
                 for k in shards]
        for k, (ack, snapshot) in zip(shards, taken):
            try:
                size = self._ray.get(ack, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 -- sorted out by _give_up_unless_lost
                self._give_up_unless_lost(error, deadline)
                self._restore(k, deadline)
                continue
            self._snapshots[k], self._changes[k] = snapshot, []
            self._kept_bytes[k], self._snapshot_bytes[k] = 0, size

    def _completed(self, shard: int, method: str, args: tuple, future: Any, deadline: float,
                   restored: set[int]) -> Any:
        """`future`'s result; if its shard's process died, the result of the call sent
        again after restoring the shard (at most `MAX_RESTORES` times; noted in `restored`)."""
        for _ in range(MAX_RESTORES):
            try:
                return future.result(max(0.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 -- sorted out by _give_up_unless_lost
                self._give_up_unless_lost(error, deadline)
            self._restore(shard, deadline)
            restored.add(shard)
            future = self._send(shard, method, args)
        return future.result(max(0.0, deadline - time.monotonic()))

    def _sent(self, calls: Sequence[tuple[int, str, tuple]]) -> list[Reply]:
        """Send each ``(shard, method, args)``; their replies. All are pickled before any is
        sent, so a call that cannot be pickled raises with nothing sent."""
        messages = [self._message(shard, method, args) for shard, method, args in calls]
        return [self._hosts[shard].channel.send(message) for (shard, _, _), message in zip(calls, messages)]

    def _send(self, shard: int, method: str, args: tuple) -> Reply:
        """Send `shard` its call over its host's channel (the reply fails at once if the
        channel is broken: the host is then restored, which connects it again)."""
        return self._hosts[shard].channel.send(self._message(shard, method, args))

    def _message(self, shard: int, method: str, args: tuple) -> Message:
        return Message((self._key, self._generations[shard], method, args), self._dumps)

    def _give_up_unless_lost(self, error: Exception, deadline: float) -> None:
        """Raise `error` unless it says a shard's process died (the call's, its broken
        connection, a restarted process without the shard, or one still restarting) and
        there is time left."""
        exceptions = self._ray.exceptions
        lost = (isinstance(error, (exceptions.RayActorError, exceptions.ActorUnavailableError, ChannelClosed,
                                   MissingShard))
                or isinstance(error, exceptions.RayTaskError) and isinstance(error.cause, MissingShard))
        if not lost or time.monotonic() > deadline:
            raise error

    def _restore(self, shard: int, deadline: float) -> None:
        """Bring `shard` back on its (restarted) host: its last snapshot, then every change
        since, in order; tried again while the host is still restarting."""
        host = self._hosts[shard]
        while True:
            self._generations[shard] += 1  # calls sent before are refused by the shard made now
            generation = self._generations[shard]
            try:
                made = [host.actor.create.remote(self._key, generation, *self._makers[shard])]
                if self._snapshots[shard] is not None:  # by Ray, which hands the shard the snapshot's value
                    made.append(host.actor.call.remote(self._key, generation, "restore", self._snapshots[shard]))
                self._ray.get(made, timeout=max(0.0, deadline - time.monotonic()))
                host.connect(self._ray, deadline)
                replies = [self._send(shard, method, args() if callable(args) else args)
                           for method, args in self._changes[shard]]
                for reply in replies:
                    reply.result(max(0.0, deadline - time.monotonic()))
                return
            except self._ray.exceptions.ObjectLostError as error:
                raise ShardLostError(f"shard {shard}'s snapshot was lost with the machine whose object store held it: "
                                     f"shards in memory survive the death of their process, not of their machine; "
                                     f"file-backed shards (path=...) on storage every machine sees survive both"
                                     ) from error
            except Exception as error:  # noqa: BLE001 -- sorted out by _give_up_unless_lost
                self._give_up_unless_lost(error, deadline)
            time.sleep(RETRY_PAUSE_S)


def _nbytes(args: Any) -> int:
    """The bytes of the arrays in `args` (arrays, and tuples, lists and dicts of them)."""
    if isinstance(args, np.ndarray):
        return args.nbytes
    if isinstance(args, (tuple, list)):
        return sum(_nbytes(arg) for arg in args)
    if isinstance(args, dict):
        return sum(_nbytes(arg) for arg in args.values())
    return 0


class RayShardHost(ShardHost):
    """A `ShardHost` that says where on the cluster its channel listens."""

    def address(self) -> tuple[str, int, bytes]:
        """The IP address of this host's node, its channel's port and token."""
        import ray

        return ray.util.get_node_ip_address(), self.channel_port, self.channel_token


class _Host:
    """A shard host of this process's Ray job: its actor and the channel to it."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.channel: Channel | None = None

    def connect(self, ray: Any, deadline: float) -> None:
        """Open a channel to the host's current process, unless the one open leads there
        (over the loopback when the host runs on this machine); `ChannelClosed` if it
        cannot."""
        address, port, token = ray.get(self.actor.address.remote(), timeout=max(0.0, deadline - time.monotonic()))
        if self.channel is not None and not self.channel.closed and self.channel.token == token:
            return
        if self.channel is not None:
            self.channel.close()  # a restarted process listens elsewhere: calls still waiting here are lost
        self.channel = Channel(("127.0.0.1" if address == ray.util.get_node_ip_address() else address, port), token)


_host_pools: dict[tuple[tuple[str, str], float], list[_Host]] = {}  # (connection, CPUs per host) -> hosts


def _connection(ray: Any) -> tuple[str, str]:
    """This process's connection to its Ray cluster: a new connection (or cluster) is a
    new job, and the actors of an old one are gone."""
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


def _hosts(ray: Any, count: int, num_cpus: float) -> list[_Host]:
    """The first `count` shard hosts reserving `num_cpus` each in this Ray job, started
    where missing (with this process's CPU backend, and as many kernel threads as whole
    CPUs reserved, at least one), restarted by Ray whenever they die."""
    pool = _host_pools.setdefault((_connection(ray), num_cpus), [])
    if len(pool) < count:
        threads = str(max(1, int(num_cpus)))  # threads idling in a spin would take the cores others reserved
        env = {"EMBTABLE_CPU_BACKEND": os.environ.get("EMBTABLE_CPU_BACKEND", "numpy"), "NUMBA_NUM_THREADS": threads,
               "OMP_NUM_THREADS": threads}
        host = ray.remote(RayShardHost).options(num_cpus=num_cpus, max_restarts=-1, max_task_retries=0,
                                                runtime_env={"env_vars": env})
        pool.extend(_Host(host.remote()) for _ in range(count - len(pool)))
    return pool[:count]


def _drop(ray: Any, connection: tuple[str, str], hosts: list[Any], key: str) -> None:
    """Forget the shards `key` on `hosts`, if this process is still connected to their
    cluster (an actor call would otherwise start a new one)."""
    if ray.is_initialized() and _connection(ray) == connection:
        for host in hosts:
            host.drop.remote(key)
