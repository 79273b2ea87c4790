"""Crash safety of file-backed tables (SPEC §11): a training process (crash_trainer.py)
killed with SIGKILL at random moments — mid-step, mid-write-back, mid-commit — leaves files
that open as exactly its last completed commit, weights and Adam state bit for bit (against
a replay of the same steps in memory), and the next run resumes from there."""

import gc
import os
import signal
import subprocess
import sys
import time

import numpy as np

import crash_trainer as trainer
import embtable as et
from committed_state import committed_state

KILLS = 24  # at least 20


def wait_for_a_step(log, runs, process):
    """Block until the log shows that run number `runs` (1-based) finished a step."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = open(log).read()
        if text.count("start ") >= runs and "step " in text[text.rindex("start "):]:
            return
        assert process.poll() is None, "the trainer exited on its own"
        time.sleep(0.01)
    raise AssertionError("the trainer did not start")


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    table, log = str(tmp_path / "table.safetensors"), str(tmp_path / "log")
    open(log, "w").close()
    et.manual_seed(0)
    et.nn.Embedding.create(table, trainer.ROWS, trainer.DIM)
    gc.collect()  # closes the created table
    replica = et.nn.Embedding.load(table)  # the same table in memory, trained by replay
    replica_optimizer = et.optim.Adam(replica.parameters(), lr=trainer.LR)
    replayed = 0
    rng = np.random.default_rng(7)
    killed_in_commit = 0
    subprocess.run([sys.executable, trainer.__file__, "--warm", str(tmp_path)], check=True, timeout=600)
    server = subprocess.Popen([sys.executable, trainer.__file__, table, log], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        for run in range(1, KILLS + 1):
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            try:
                wait_for_a_step(log, run, server)
                time.sleep(rng.uniform(0.0, 0.3))
            finally:
                os.kill(pid, signal.SIGKILL)
                assert server.stdout.readline() == "reaped\n"
            replayed, in_commit = check_reopened(table, log, replica, replica_optimizer, replayed)
            killed_in_commit += in_commit
    finally:
        server.kill()
        server.wait(timeout=60)
    print("replayed", replayed, "killed in commit", killed_in_commit)
    assert replayed > 0
    assert killed_in_commit >= 1  # some kills landed inside a commit


def check_reopened(table, log, replica, replica_optimizer, replayed):
    """Reopen the killed trainer's table and check that it is its last commit, bit for bit
    against the replica advanced by replay to that commit; the steps replayed so far, and
    whether the kill landed inside a commit."""
    lines = open(log).read().split()
    events = list(zip(lines[::2], map(int, lines[1::2])))
    # a commit an earlier reopen found counts as completed, noted or not (an earlier
    # trainer may have died between its manifest and the note)
    logged = max([step for event, step in events if event == "commit-end"] + [replayed])
    reopened = et.nn.Embedding.open(table)  # read-only: ignores what was logged after the last commit
    step = et.optim.Adam(reopened.parameters()).state[0].get("step", 0)
    # the last commit noted, or one that completed just before the kill
    assert step in (logged, logged + trainer.EVERY), (step, logged)
    assert step >= replayed
    while replayed < step:
        trainer.take_step(replica, replica_optimizer, replayed)
        replayed += 1
    assert reopened.weight.numpy().tobytes() == replica.weight.numpy().tobytes(), step
    stored = committed_state(table, "Adam", {"exp_avg": (trainer.DIM,), "exp_avg_sq": (trainer.DIM,)}, trainer.ROWS)
    if step == 0:  # killed before the first commit: no optimizer state was committed
        assert stored is None
    else:
        for name in ("exp_avg", "exp_avg_sq"):
            assert stored[name].tobytes() == replica_optimizer.state[0][name].numpy().tobytes(), (step, name)
    return replayed, events[-1][0] == "commit-begin"
