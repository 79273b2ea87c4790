"""How a busy neighbour process slows embtable's demo, under each OpenMP wait policy. Run by
hand (never in CI), on an otherwise idle machine:

    .venv/bin/python benchmarks/busy_neighbour.py [--epochs 2] [--runs 3]
        [--policies default passive active spin=30000]

numba's parallel kernels run on OpenMP worker threads, which by default spin a while after
each kernel waiting for the next one. Beside another busy process those spinning workers
take CPU time the neighbour (or embtable's own next kernel) needed. For each policy this
runs ``embtable demo --epochs N`` in a fresh process alone and beside a process that keeps
one core busy, the cases taking turns run by run, and reports the median wall time of each
and the busy/idle ratio. "default" leaves the environment as it is (embtable's own choice
applies); "passive" and "active" set ``OMP_WAIT_POLICY`` for the demo's process, "spin=N"
sets ``GOMP_SPINCOUNT`` to N (how long GNU OpenMP's workers spin before they sleep).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BUSY_LOOP = "while True: pass"


def demo_seconds(policy: str, epochs: int, busy: bool, out: str) -> float:
    """Wall seconds of one ``embtable demo --epochs`` run under `policy`, beside a busy
    process when `busy`."""
    env = {name: value for name, value in os.environ.items() if name not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("spin="):
        env["GOMP_SPINCOUNT"] = policy[len("spin="):]
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    command = [sys.executable, "-m", "embtable", "demo", "--epochs", str(epochs), "--out", out, "--probes"]
    neighbour = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--policies", nargs="+", default=["default", "passive", "active"],
                        help="default, passive, active or spin=N")
    args = parser.parse_args()
    cases = [(policy, busy) for policy in args.policies for busy in (False, True)]
    times: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as out:
        demo_seconds("default", args.epochs, False, out)  # the corpus and numba's cache, once
        for run in range(args.runs):
            for policy, busy in cases:
                seconds = demo_seconds(policy, args.epochs, busy, out)
                times[policy, busy].append(seconds)
                print(f"run {run + 1}: {policy:8s} {'busy' if busy else 'idle'} {seconds:6.1f} s", flush=True)
    print(f"embtable demo --epochs {args.epochs}, {os.cpu_count()} cores, medians of {args.runs}:")
    for policy in args.policies:
        idle, busy = (statistics.median(times[policy, b]) for b in (False, True))
        print(f"  {policy:8s} idle {idle:6.1f} s   beside a busy process {busy:6.1f} s   busy / idle {busy / idle:4.2f}x")


if __name__ == "__main__":
    main()
