"""The demo's figures: labels placed without overlap, mid-frequency words on the map, the
loss curve smoothed with its epochs marked."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et
from embtable.apps import plots
from embtable.apps.labels import overlapping, place_labels

BOUNDS = (0.0, 0.0, 400.0, 300.0)


def boxes_of(corners, sizes):
    kept = ~np.isnan(corners).any(axis=1)
    return kept, np.hstack([corners, corners + sizes])


def assert_apart(boxes, gap):
    """No two of `boxes` come nearer than `gap` (so none overlap)."""
    for a, b in itertools.combinations(boxes, 2):
        assert not overlapping(a + np.array([-gap, -gap, gap, gap]), b[None])[0], (a, b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 120), gap=st.sampled_from([0.0, 2.0, 5.0]),
       point_size=st.sampled_from([0.0, 3.0]))
def test_kept_labels_never_overlap_each_other_or_any_point(seed, count, gap, point_size):
    rng = np.random.default_rng(seed)
    points = rng.uniform((0, 0), BOUNDS[2:], (count, 2))
    sizes = rng.uniform((5, 4), (60, 14), (count, 2))
    corners = place_labels(points, sizes, BOUNDS, gap=gap, point_size=point_size)
    kept, boxes = boxes_of(corners, sizes)
    assert_apart(boxes[kept], gap)
    assert (boxes[kept, :2] >= BOUNDS[:2]).all() and (boxes[kept, 2:] <= BOUNDS[2:]).all()
    half = point_size / 2
    squares = np.hstack([points - half, points + half])
    for i in np.flatnonzero(kept):
        others = np.delete(squares, i, axis=0)
        assert not overlapping(boxes[i], others).any(), f"label {i} hides a point"
        # beside its own point: `gap` beyond the point's square on one side, centred on the other axis
        low, high, p = boxes[i, :2], boxes[i, 2:], points[i]
        sides = [np.isclose(low[0], p[0] + half + gap), np.isclose(high[0], p[0] - half - gap),
                 np.isclose(low[1], p[1] + half + gap), np.isclose(high[1], p[1] - half - gap)]
        assert any(sides), (boxes[i], p)


def test_earlier_labels_take_their_first_choice_and_labels_without_room_are_left_out():
    points = np.array([[100.0, 150.0], [100.0, 155.0]])  # the labels' right sides would overlap
    sizes = np.full((2, 2), (40.0, 10.0))
    right, left = (2.0, -5.0), (-2.0 - 40.0, -5.0)
    np.testing.assert_allclose(place_labels(points, sizes, BOUNDS), points + [right, left])
    np.testing.assert_allclose(place_labels(points[::-1], sizes, BOUNDS), points[::-1] + [right, left])
    assert np.isnan(place_labels(points[:1], np.array([[120.0, 10.0]]), (50.0, 100.0, 150.0, 200.0))).all()


def test_a_label_that_would_leave_the_bounds_goes_to_another_side():
    points = np.array([[395.0, 150.0], [5.0, 150.0]])
    corners = place_labels(points, np.full((2, 2), (30.0, 10.0)), BOUNDS)
    np.testing.assert_allclose(corners, points + [(-2.0 - 30.0, -5.0), (2.0, -5.0)])


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(et.InvalidArgumentError, match=r"shape \[n, 2\], got \(3, 2\) and \(2, 2\)"):
        place_labels(np.zeros((3, 2)), np.ones((2, 2)), BOUNDS)
    with pytest.raises(et.InvalidArgumentError, match="must be >= 0, got sizes down to -1.0"):
        place_labels(np.zeros((1, 2)), np.array([[-1.0, 2.0]]), BOUNDS)


def test_the_moving_average_is_the_weighted_mean_of_the_past():
    values = np.random.default_rng(0).standard_normal(200)
    weight = 0.9
    expected = [np.average(values[:t + 1], weights=weight ** np.arange(t, -1, -1)) for t in range(len(values))]
    np.testing.assert_allclose(plots.smoothed(values, weight), expected, rtol=1e-12)
    np.testing.assert_allclose(plots.smoothed(np.full(50, 3.0)), 3.0, rtol=1e-12)  # no rise from zero
    np.testing.assert_array_equal(plots.smoothed(values, 0.0), values)
    assert plots.smoothed([]).shape == (0,)
    with pytest.raises(et.InvalidArgumentError, match="in \\[0, 1\\), got 1"):
        plots.smoothed(values, 1)


def test_the_loss_figure_marks_each_epoch_and_draws_the_average():
    rng = np.random.default_rng(1)
    epochs = [list(rng.random(n)) for n in (30, 25, 28)]
    figure = plots.loss_figure(epochs)
    try:
        axes = figure.axes[0]
        raw, average, *boundaries = axes.lines
        flat = np.concatenate(epochs)
        np.testing.assert_array_equal(raw.get_ydata(), flat)
        np.testing.assert_allclose(average.get_ydata(), plots.smoothed(flat))
        assert [line.get_xdata()[0] for line in boundaries] == [29.5, 54.5]  # before batches 30 and 55
        assert axes.get_xlabel() == "batch" and axes.get_ylabel()
        assert plots.LOSS_CAPTION in [text.get_text() for text in figure.texts]
    finally:
        plots.pyplot().close(figure)


def test_the_map_shows_mid_frequency_words_of_four_letters_or_more():
    words = ["the", "a", "of"] * 40 + [f"w{i:03d}" if i % 3 else "x" for i in range(880)]  # 1000, most frequent first
    chosen = plots.map_words(words)
    assert chosen == [i for i in range(100, 400) if len(words[i]) >= 4]
    assert chosen[0] == 121 and chosen[-1] == 398 and len(chosen) == 186  # w001 ... w278, no "x"
    small = ["the", "of", "to"] + [f"word{i}" for i in range(40)]  # 43 words: the band starts at 4
    assert plots.map_words(small) == list(range(4, 43))
    assert plots.map_words(["a", "b", "c"]) == [0, 1, 2]  # too few long words: the whole band


def test_the_drawn_map_has_axis_labels_and_no_overlapping_labels(tmp_path):
    rng = np.random.default_rng(2)
    words = [f"word{i}" for i in range(600)]
    figure = plots.word_map_figure(words, rng.standard_normal((600, 16)))
    try:
        axes = figure.axes[0]
        assert "principal component" in axes.get_xlabel() and "principal component" in axes.get_ylabel()
        renderer = figure.canvas.get_renderer()
        shown = {text.get_text(): text.get_window_extent(renderer) for text in axes.texts}
        assert 20 < len(shown) < 300 and set(shown) <= {words[i] for i in plots.map_words(words)}
        assert_apart(np.array([box.extents for box in shown.values()]), 0.0)
        plots.write(figure, str(tmp_path / "map.png"))
    finally:
        plots.pyplot().close(figure)
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
