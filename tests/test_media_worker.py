"""The media worker's hand-off (tracklet/media/worker.py): ``log()`` appends to a lane's queue and
never wakes a lane that is working or ticking, so the caller never pays for a thread's wake-up
(on an oversubscribed kernel that wake let the woken thread preempt the training thread inside
``log()``). A lane wakes itself every ``wake_interval``; the caller wakes it only for a burst
(``WAKE_ITEMS`` waiting) or after it dozed off, and ``flush``/``close`` wake every lane."""

from __future__ import annotations

import time

import numpy as np
import pytest

import tracklet
from tracklet.core.logged import LoggedObject
from tracklet.media import worker as media_worker

from conftest import read


class Note(LoggedObject):
    """A logged object whose record is its own number (the worker's real code path, no encoding)."""

    def __init__(self, number: int) -> None:
        self.number = number

    def _record(self, context, where):
        return (where.key, where.step, self.number)


def _until(condition, limit: float = 30.0) -> None:
    """Wait for ``condition()`` (a generous cap: the machine is shared; no timing is asserted)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the worker never got to it"
        time.sleep(0.005)


def _ticking(worker) -> bool:
    return all(lane.thread is None or (lane.state != media_worker._Lane.WORKING and not lane.jobs)
               for lane in worker._lanes)


@pytest.fixture
def make_worker(tmp_path):
    made = []

    def _make(wake_interval: float) -> tuple[media_worker.LoggedWorker, list]:
        records: list = []
        worker = media_worker.LoggedWorker(tmp_path, records.append, lambda token, message: None, workers=1,
                                           wake_interval=wake_interval)
        made.append(worker)
        return worker, records

    yield _make
    for worker in made:
        worker.close(10)


def _first(worker, records) -> None:
    """Submit one item (it starts the lane's thread) and wait until the lane sleeps again."""
    worker.submit(0, 0.0, "k", [Note(0)])
    _until(lambda: len(records) == 1 and _ticking(worker))


def test_items_below_the_threshold_are_picked_up_by_the_lanes_own_tick(make_worker):
    worker, records = make_worker(wake_interval=0.02)
    _first(worker, records)
    for number in range(1, 6):
        worker.submit(number, 0.0, "k", [Note(number)])
        _until(lambda count=number + 1: len(records) == count)
    assert worker.caller_wakes == 0
    assert [number for _, _, number in records] == list(range(6))


def test_a_burst_wakes_a_sleeping_lane_once_at_the_threshold(make_worker):
    worker, records = make_worker(wake_interval=3600.0)  # its own tick never comes in this test
    _first(worker, records)
    for number in range(1, media_worker.WAKE_ITEMS):
        worker.submit(number, 0.0, "k", [Note(number)])
    assert worker.caller_wakes == 0 and len(records) == 1  # waiting for the lane's tick
    worker.submit(99, 0.0, "k", [Note(99)])
    assert worker.caller_wakes == 1
    _until(lambda: len(records) == media_worker.WAKE_ITEMS + 1)


def test_a_lane_idle_for_long_dozes_and_the_next_item_wakes_it(make_worker, monkeypatch):
    monkeypatch.setattr(media_worker, "DOZE_AFTER", 0.0)
    worker, records = make_worker(wake_interval=3600.0)
    _first(worker, records)
    _until(lambda: worker._lanes[0].state == media_worker._Lane.DOZING)
    worker.submit(1, 0.0, "k", [Note(1)])
    assert worker.caller_wakes == 1
    _until(lambda: len(records) == 2)


def test_flush_and_close_wake_the_lanes(make_worker):
    worker, records = make_worker(wake_interval=3600.0)
    _first(worker, records)
    worker.submit(1, 0.0, "k", [Note(1)])
    assert worker.flush(timeout=60) and len(records) == 2
    worker.submit(2, 0.0, "k", [Note(2)])
    assert worker.close(timeout=60) and len(records) == 3
    assert worker.caller_wakes == 0


def test_one_image_per_step_is_recorded_without_a_flush_and_without_waking_the_worker(start):
    """A run logging one image per step: after the first, no log() wakes the media worker, and
    each image reaches the record log on the worker's own time (no flush asks for it)."""
    run = start()
    pictures = [np.full((16, 16, 3), i, dtype=np.uint8) for i in range(6)]
    run.log({"img": tracklet.Image(pictures[0])})
    worker = run._logged
    _until(lambda: worker.recorded == 1 and _ticking(worker))
    for step in range(1, 6):
        run.log({"img": tracklet.Image(pictures[step])})
        _until(lambda count=step + 1: worker.recorded == count)
    assert worker.caller_wakes == 0
    run.finish()
    assert [int(item.to_numpy()[0, 0, 0]) for item in read(run).images("img")] == list(range(6))
