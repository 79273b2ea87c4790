"""The benchmark runs end to end on a tiny workload (its numbers are not checked: speed is
reported in BENCHMARKS.md, never asserted)."""

import pathlib
import re
import sys

import numpy as np
import pytest

from embtable.apps import bench


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
    small = bench.small_batches(weights, sizes=(1, 7))
    assert [n for n, *_ in small] == [1, 7] and all(theirs > 0 and ours > 0 for _, theirs, ours in small)
    timings = bench.scaling([500, 5000], 8, 64, 32, repeats=1)
    assert [row[0] for row in timings] == [500, 5000]
    assert all(len(row) == 5 and 0 < row[4] <= 64 for row in timings)  # distinct rows of 64 indices


def test_medians_take_each_number_over_runs_and_keep_labels():
    runs = [[("w", "forward", 1.0, 4.0), ("w", "backward", 9.0, 3.0)],
            [("w", "forward", 3.0, 2.0), ("w", "backward", 7.0, 5.0)],
            [("w", "forward", 2.0, 8.0), ("w", "backward", 8.0, 1.0)]]
    assert bench.medians(runs) == [("w", "forward", 2.0, 4.0), ("w", "backward", 8.0, 3.0)]
    assert bench.medians([[(500, 1.0, 7)], [(500, 3.0, 7)]]) == [(500, 2.0, 7)]  # counts kept


def test_row_line_prints_a_ratio_or_a_bandwidth():
    assert bench.row_line(("w", "forward", 3.0, 1.5), 20.0, 10.0).split()[-1] == "2.00"
    line = bench.row_line(("w", "gather", 10.0, 5.0), 20.0, 10.0)
    assert "(50% of copy)" in line and "(50% of a fresh copy)" in line


def test_runs_and_repeats_must_be_positive(capsys):
    for flag in ("--runs", "--repeats"):
        with pytest.raises(SystemExit):
            bench.main([flag, "0"])
        assert "must be at least 1, got 0" in capsys.readouterr().err


def test_every_bag_op_runs_on_both_libraries():
    from embtable.apps import bench_bags

    workload = bench_bags.BagWorkload("zipf", 500, 8, 16, 4)
    weights = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    rows = list(bench_bags.run_ops(workload, weights, repeats=1))
    assert [op for _, op, _, _ in rows] == ["forward sum", "pool GB/s", "forward mean", "forward max",
                                             "weighted sum", "dense backward", "sparse step"]
    assert all(ours > 0 for _, _, _, ours in rows) and all(theirs > 0 for _, op, theirs, _ in rows if op != "pool GB/s")
    assert "pool GB/s" in bench_bags.line(rows[1], 10.0) and bench_bags.line(rows[0], 10.0).split()[-1]


def test_every_way_of_the_dlrm_step_runs():
    from embtable.apps import bench_dlrm

    rows = bench_dlrm.run(500, "zipf", repeats=1)
    assert [way for _, way, _, _ in rows] == ["PyTorch + embtable tables", "all embtable"]
    assert all(theirs > 0 and ours > 0 for _, _, theirs, ours in rows)


def test_small_bag_pools_run_on_both_libraries():
    from embtable.apps import bench_bags

    weights = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    rows = bench_bags.small_bags(weights, calls=2)
    assert [label for label, _, _ in rows] == ["B=1 L=10", "B=32 L=10", "B=256 L=20"]
    assert all(theirs > 0 and ours > 0 for _, theirs, ours in rows)


def test_without_torch_bench_says_how_to_install_the_pinned_cpu_build(monkeypatch, capsys):
    from embtable.apps.cli import main

    pyproject = (pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    pin = re.search(r'^test = \[.*"(torch==[^"]+)"', pyproject, flags=re.M).group(1)  # the test extra's torch
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    assert main(["bench", "--quick"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "Traceback" not in printed.err
    assert f"-m pip install '{pin}' --index-url https://download.pytorch.org/whl/cpu" in printed.err
    with pytest.raises(SystemExit) as exit:  # the options are still explained
        main(["bench", "--help"])
    assert exit.value.code == 0 and "--quick" in capsys.readouterr().out
