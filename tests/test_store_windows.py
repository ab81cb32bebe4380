"""Many series' windows read together (tracklet/store/windows.py) against the points themselves:
every bucket is exact over the points it covers, the buckets cover every point of the window and
none outside it, and a series read in a batch equals the same series read alone. On SQLite and
PostgreSQL, with irregular steps, gaps, NaN/inf and spikes, at every pyramid level."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from conftest import QUIET

import tracklet
from tracklet.store import Store
from tracklet.store import blocks as B
from tracklet.store.tail_cache import decoded_nbytes
from tracklet.store.windows import CHUNK, DecodedBlocks, bucketize_points

SHAPES = {  # run name -> (steps, values)
    "dense": (np.arange(70_000), np.sin(np.arange(70_000) / 300.0)),
    "every3": (np.arange(0, 90_000, 3), np.cos(np.arange(30_000) / 50.0)),
    "gappy": (np.concatenate([np.arange(0, 20_000), np.arange(45_000, 52_000), np.arange(80_000, 81_000)]),
              np.linspace(-1, 1, 28_000)),
}


def _values(name: str) -> np.ndarray:
    steps, values = SHAPES[name]
    values = values.copy()
    values[len(values) // 3] = 1e6  # a spike
    values[::997] = np.nan
    values[5::1231] = np.inf
    return values


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    for name, (steps, _) in SHAPES.items():
        run = tracklet.init(project="w", id=name, dir=str(root), settings={**QUIET, "max_queue": 100_000})
        for step, value in zip(steps.tolist(), _values(name).tolist()):
            run.log({"m": value}, step=step)
        run.finish()
    return root


@pytest.fixture
def store(recorded, store_url):
    store = Store(store_url, root=recorded)
    store.index()
    return store


def _expect_exact_cover(history, name: str, start: int | None, end: int | None) -> None:
    steps, values = SHAPES[name][0], _values(name)
    low = steps[0] if start is None else start
    high = steps[-1] if end is None else end
    inside = (steps >= low) & (steps <= high)
    if history.exact:
        assert history.steps.tolist() == steps[inside].tolist()
        np.testing.assert_array_equal(history.values, values[inside])
        return
    assert int(history.count.sum()) == int(inside.sum())  # every point of the window, once
    assert np.all(history.first_steps >= low) and np.all(history.steps <= high)
    assert np.all(history.first_steps[1:] > history.steps[:-1])  # disjoint, in order
    lows = np.searchsorted(steps, history.first_steps, "left")
    highs = np.searchsorted(steps, history.steps, "right")
    for i, (first, after) in enumerate(zip(lows.tolist(), highs.tolist())):
        covered = values[first:after]
        finite = covered[np.isfinite(covered)]
        assert history.count[i] == len(covered) and history.nonfinite[i] == len(covered) - len(finite)
        if len(finite):
            assert history.min[i] == finite.min() and history.max[i] == finite.max()
        else:
            assert math.isnan(history.min[i]) and math.isnan(history.max[i])
        np.testing.assert_array_equal(history.last[i], covered[-1])


WINDOWS = [(None, None), (0, 100_000), (123, 69_000), (19_990, 45_010), (44_999, 45_001), (60_000, 79_999),
           (50_000, 50_000), (-5, 3), (95_000, 99_000)]


@pytest.mark.parametrize("buckets", [1, 7, 64, 300, 5000, None])
def test_every_bucket_is_exact_over_the_points_it_covers(recorded, store_url, buckets):
    store = Store(store_url, root=recorded)
    store.index()
    paths = [f"w/{name}" for name in SHAPES]
    for start, end in WINDOWS:
        together = store.history(paths, "m", start=start, end=end, buckets=buckets)
        assert [h.run for h in together] == paths
        for history in together:
            name = history.run.split("/")[1]
            _expect_exact_cover(history, name, start, end)
            if buckets is not None and not history.exact:
                assert len(history) <= buckets
            (alone,) = store.history(history.run, "m", start=start, end=end, buckets=buckets)
            assert alone.exact == history.exact
            np.testing.assert_array_equal(alone.steps, history.steps)
            np.testing.assert_array_equal(alone.values if alone.exact else alone.max,
                                          history.values if history.exact else history.max)


def test_the_spike_is_in_some_bucket_at_every_resolution(store):
    steps = SHAPES["dense"][0]
    spike = int(steps[len(steps) // 3])
    for buckets in (1, 3, 50, 700, 4000):
        (history,) = store.history("w/dense", "m", start=spike - 30_000, end=spike + 20_000, buckets=buckets)
        holder = np.flatnonzero(history.max == 1e6)
        assert len(holder) == 1 and history.first_steps[holder[0]] <= spike <= history.steps[holder[0]]


def test_windows_in_time_differ_per_run_and_still_batch(store):
    paths = [f"w/{name}" for name in SHAPES]
    together = store.history(paths, "m", x="relative_time", start=0.0, end=1e9, buckets=200)
    for history in together:
        (alone,) = store.history(history.run, "m", x="relative_time", start=0.0, end=1e9, buckets=200)
        np.testing.assert_array_equal(alone.steps, history.steps)
        np.testing.assert_array_equal(alone.x, history.x)


def test_more_series_than_one_statement_takes(root, store_url):
    for index in range(3):
        run = tracklet.init(project="many", id=f"r{index}", dir=str(root), settings=QUIET)
        for step in range(50):
            run.log({f"k{key}": float(step * key + index) for key in range(CHUNK // 2 + 7)})
        run.finish()
    store = Store(store_url, root=root)
    store.index()
    keys = [f"k{key}" for key in range(CHUNK // 2 + 7)]
    histories = store.history([f"many/r{i}" for i in range(3)], keys, start=10, end=39, buckets=10)
    assert len(histories) == 3 * len(keys) > CHUNK
    for history in histories:
        key, index = int(history.key[1:]), int(history.run[-1])
        assert not history.exact and history.count.sum() == 30
        assert history.max.max() == 39.0 * key + index and history.min.min() == 10.0 * key + index


def test_bucketize_points_equals_bucketizing_one_point_entries():
    rng = np.random.default_rng(4)
    steps = np.cumsum(rng.integers(1, 5, 5000))
    values = rng.standard_normal(5000)
    values[rng.integers(0, 5000, 40)] = np.nan
    values[rng.integers(0, 5000, 40)] = -np.inf
    for start, end, buckets in ((0, int(steps[-1]), 300), (int(steps[10]), int(steps[4000]), 17), (5, 9, 1000)):
        inside = (steps >= start) & (steps <= end)
        fast = bucketize_points(steps[inside], values[inside], start, end, buckets)
        slow = B.bucketize(B.point_entries(steps[inside], values[inside]), start, end, buckets)
        assert fast.dtype == slow.dtype
        for name in B.ENTRY.names:
            np.testing.assert_array_equal(fast[name], slow[name])


def _loss_run(root, run_id: str, steps: range, scale: float):
    run = tracklet.init(project="cache", id=run_id, dir=str(root), settings=QUIET, resume="allow")
    for step in steps:
        run.log({"loss": scale * step}, step=step)
    return run


def test_decoded_blocks_never_answer_for_rewritten_ones(root, store_url):
    """Blocks are cached decoded, keyed by their bytes: an append rewrites a series' last block,
    and a run recorded again from scratch reuses its id; neither may be answered from the cache."""
    store = Store(store_url, root=root)
    live = _loss_run(root, "live", range(0, 1500), 1.0)
    live.flush()
    store.index()
    (before,) = store.history(live.path, "loss", start=1000, end=5000, buckets=100)
    assert before.count.sum() == 500
    for step in range(1500, 2600):
        live.log({"loss": float(step)}, step=step)
    live.finish()
    store.index()
    (after,) = store.history(live.path, "loss", start=1000, end=5000, buckets=100)
    assert after.count.sum() == 1600 and after.max.max() == 2599.0

    shutil.rmtree(live.dir)
    again = _loss_run(root, "live", range(0, 2600), 2.0)  # the same id and shape, other values
    again.finish()
    store.index()
    (replaced,) = store.history(again.path, "loss", start=1000, end=5000, buckets=100)
    assert replaced.count.sum() == 1600 and replaced.max.max() == 2.0 * 2599


def test_a_block_read_without_how_it_was_logged_is_decoded_with_it_when_asked():
    """A chart's read (``logged=False``) leaves a level-0 block's int/bool part undecoded; a read
    that wants it (a history of ints) gets it exact from the same cache, which keeps it from then
    on and counts its bytes; float-only blocks and summary levels read as before."""
    steps = np.arange(10, 20, dtype=np.int64)
    ints = np.array([3, 2**53 + 1, -5, 0, 7, 8, 9, 2**62, 1, 2], dtype=np.int64)
    logged = B.Logged(np.full(len(steps), B.INT, dtype=np.uint8), ints)
    data = B.encode_points(steps, ints.astype(np.float64), logged)
    cache = DecodedBlocks()
    chart = cache.decode(0, data, logged=False)
    assert chart[2] is None and chart[0].tolist() == steps.tolist()
    exact = cache.decode(0, data)
    assert exact[2] is not None and B.as_logged(exact[1], exact[2]) == ints.tolist()
    assert cache.decode(0, data, logged=False) is exact  # kept whole now: either read takes it
    assert cache.decode(0, data) is exact
    stored = len(data) + decoded_nbytes(exact)
    assert cache._bytes == stored  # the first, partial entry's bytes are no longer counted
    floats = B.encode_points(steps, steps / 3.0)
    assert cache.decode(0, floats, logged=False)[2] is None and cache.decode(0, floats)[2] is None
    entries = B.encode_entries(B.point_entries(steps, steps / 3.0))
    assert cache.decode(1, entries, logged=False).tolist() == cache.decode(1, entries).tolist()


def test_joined_pieces_are_the_points_and_how_each_was_logged_in_order():
    """``blocks.join_points``: what ingest and the window reader join level-0 pieces with."""
    first = (np.array([1, 2]), np.array([0.5, 1.0]), None)
    second = (np.array([3]), np.array([3.0]), B.Logged(np.array([B.INT], dtype=np.uint8), np.array([3])))
    steps, values, logged = B.join_points([first, second])
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [0.5, 1.0, 3.0]
    assert B.as_logged(values, logged) == [0.5, 1.0, 3]
    assert B.join_points([first]) is first
    assert B.join_points([first, first])[2] is None
