"""The training run test_crash.py kills: Adam over a file-backed table, committing every
`EVERY` steps, noting in a log when a run starts, each step ends, and each commit begins
and ends.
Its batches depend only on the step number, so a replay in memory takes the same steps.

Run as ``python crash_trainer.py TABLE LOG``: a server that starts a trainer (resuming
from the table's last commit) for each line it reads; ``--warm FOLDER`` first, once."""

import importlib
import os
import sys

import numpy as np

ROWS, DIM, BATCH, EVERY, LR = 20000, 16, 1024, 3, 0.01
CACHE_BYTES = 1000 * (DIM * 4 * 3 + 64)  # room for 1000 rows: every step evicts and writes back


def batch(step):
    """The ids of step number `step` (counted from 0): half Zipf, half uniform."""
    rng = np.random.default_rng(step)
    return np.concatenate([np.minimum(rng.zipf(1.2, BATCH // 2) - 1, ROWS - 1),
                           rng.integers(0, ROWS, BATCH // 2)])


def take_step(emb, optimizer, step):
    optimizer.zero_grad()
    out = emb(batch(step))
    (out * out).sum().backward()
    optimizer.step()


def main(table, log):
    import embtable as et

    emb = et.nn.Embedding.open(table, writable=True, cache_bytes=CACHE_BYTES)
    optimizer = et.optim.Adam(emb.parameters(), lr=LR)
    step = optimizer.state[0].get("step", 0)
    handle = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(handle, f"start {step}\n".encode())
    while True:
        take_step(emb, optimizer, step)
        step += 1
        os.write(handle, f"step {step}\n".encode())
        if step % EVERY == 0:
            os.write(handle, f"commit-begin {step}\n".encode())
            emb.commit()
            os.write(handle, f"commit-end {step}\n".encode())


def warm(folder):
    """Take a few steps and commits on a throwaway table in `folder`, so that every kernel
    the trainers run is compiled and in numba's cache before any trainer is killed (a
    trainer killed while compiling would leave nothing cached, and the next one would
    compile again)."""
    import embtable as et

    table = os.path.join(folder, "warm.safetensors")
    emb = et.nn.Embedding.create(table, ROWS, DIM, cache_bytes=CACHE_BYTES)
    optimizer = et.optim.Adam(emb.parameters(), lr=LR)
    for step in range(2 * EVERY):
        take_step(emb, optimizer, step)
        if (step + 1) % EVERY == 0:
            emb.commit()
    del emb, optimizer
    et.nn.Embedding.open(table)  # a read-only open that finds nothing to undo


def serve(table, log):
    """Fork a trainer for each line read from stdin, print its pid, and print "reaped" once
    it is dead: the trainers start without paying for the imports each time (forked
    before any thread exists: only modules were imported)."""
    # what a trainer imports (torch and, for its deterministic switch, its compiler: on its backend)
    for module in ("embtable", "numba", "torch", "torch._inductor"):
        importlib.import_module(module)

    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                main(table, log)
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--warm":
        warm(sys.argv[2])
    else:
        serve(*sys.argv[1:3])
