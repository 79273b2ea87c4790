"""The benchmark runs end to end on a tiny workload (its numbers are not checked: speed is
reported in BENCHMARKS.md, never asserted)."""

import numpy as np

from embtable import bench


def test_every_op_runs_on_both_libraries():
    workload = bench.Workload("zipf", 500, 8, 256)
    rng = np.random.default_rng(0)
    indices = bench.indices_for(workload, rng)
    assert indices.shape == (256,) and 0 <= indices.min() and indices.max() < 500
    weights = rng.standard_normal((500, 8)).astype(np.float32)
    results = bench.run_ops(workload, weights, indices, repeats=1)
    assert set(results) == {"forward", "forward max_norm", "backward", "backward freq", "sparse step"}
    assert all(theirs > 0 and ours > 0 for theirs, ours in results.values())
    assert all(t > 0 for t in bench.dense_adam(weights, repeats=1))
    timings = bench.scaling([500, 5000], 8, 64, 32, repeats=1)
    assert [row[0] for row in timings] == [500, 5000] and all(len(row) == 4 for row in timings)
