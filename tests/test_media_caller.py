"""What logging media costs the training thread (docs/media.md, "What the caller pays"): the
snapshot of an array or CPU tensor is a copy into a reused buffer (tracklet.media.buffers), so a
steady stream of images maps no new memory on the caller's thread (page faults, not the copy, were
most of its cost); a buffer is reused only once nothing can read the copy it held."""

from __future__ import annotations

import resource
import threading

import numpy as np
import pytest

import tracklet
from tracklet.core.logged import LoggedObject
from tracklet.media import buffers

from conftest import read

SHAPE = (224, 224, 3)


def _faults() -> int:
    """Minor page faults of the calling thread so far (Linux)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def _pictures(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, SHAPE, dtype=np.uint8) for _ in range(count)]


@pytest.fixture(autouse=True)
def _empty_pool():
    buffers.POOL.clear()
    yield
    buffers.POOL.clear()


def test_a_steady_stream_of_images_maps_no_new_memory_on_the_callers_thread(start):
    """One image per step with the worker keeping up: after the first few, each copy reuses the
    buffer of an image already recorded (glibc's allocator mostly did too here; the backlog test
    below is where it did not), and every image reads back as logged."""
    run = start()
    pictures = _pictures(4)
    for i in range(4):  # warm up: the first copies need memory of their own
        run.log({"img": tracklet.Image(pictures[i])})
        run.flush()
    faults = []
    for i in range(24):
        picture = pictures[i % 4]
        before = _faults()
        image = tracklet.Image(picture)
        faults.append(_faults() - before)
        run.log({"img": image})
        del image
        run.flush()  # the worker has recorded it: its buffer is free again
    run.finish()
    # a 224×224×3 copy spans 37 pages; a few stray faults (the interpreter's own) are allowed
    assert sorted(faults)[len(faults) // 2] == 0, faults
    assert sum(faults) < 24 * 3, faults
    recorded = read(run)
    images = recorded.images("img")
    assert len(images) == 28
    for i, image in enumerate(images[4:]):
        assert np.array_equal(image.to_numpy(), pictures[i % 4])


class _Gate(LoggedObject):
    """A logged object whose recording waits for ``open``: the images logged after it under the
    same key wait behind it, as a backlog does when images are logged faster than encoded."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def _record(self, context, where):
        self.open.wait(30)
        return None


def test_a_backlog_of_images_is_copied_into_buffers_already_mapped(start):
    """Logging faster than images are encoded: the first backlog's copies need memory of their
    own; once recorded, their buffers (and as many more as that backlog needed, mapped by the
    worker) wait in the pool, so the next backlog's copies fault no pages on the caller's thread.
    Without the pool the second backlog's copies faulted ~36 pages each (1,144 for 32 images)."""
    run = start()
    pictures = _pictures(32)
    faults = []
    for burst in range(3):
        gate = _Gate()
        run.log({"img": gate})
        before = _faults()
        for picture in pictures:
            run.log({"img": tracklet.Image(picture + burst)})
        faults.append(_faults() - before)
        gate.open.set()
        run.flush()
    run.finish()
    # Measured without the pool: [1158, 1144, 37]; with it [~300, 0, 0] on a quiet machine. A copy spans
    # 37 pages: one image's worth (plus a few strays) is allowed, for a buffer whose image a thread of
    # the run still held when the next backlog began (ci56, under load: [295, 0, 36]).
    assert max(faults[1:]) < 37 + 32, faults
    images = read(run).images("img")
    assert len(images) == 96
    assert all(np.array_equal(image.to_numpy(), pictures[i % 32] + i // 32) for i, image in enumerate(images))


def test_an_image_logged_twice_keeps_its_pixels_while_it_lives(start):
    """A buffer goes back to the pool only when its image is freed: an image object logged at two
    steps (while other images are logged in between) records the same pixels both times."""
    run = start()
    pictures = _pictures(6)
    kept = tracklet.Image(pictures[0])
    run.log({"kept": kept})
    run.flush()
    for picture in pictures[1:]:
        run.log({"other": tracklet.Image(picture)})
        run.flush()
    run.log({"kept": kept})
    run.finish()
    recorded = read(run)
    assert [np.array_equal(image.to_numpy(), pictures[0]) for image in recorded.images("kept")] == [True, True]
    assert [np.array_equal(image.to_numpy(), picture) for image, picture in
            zip(recorded.images("other"), pictures[1:])] == [True] * 5


def test_a_buffer_something_still_views_is_not_reused():
    """Safety net: an array viewing a pooled buffer (held outside the image) keeps that buffer out
    of the pool, so its bytes never change under it."""
    picture = _pictures(1)[0]
    image = tracklet.Image(picture)
    view = image._data
    del image
    assert buffers.POOL.free_bytes == 0
    again = tracklet.Image(picture + 1)
    assert not np.shares_memory(again._data, view) and np.array_equal(view, picture)
    del again
    assert buffers.POOL.free_bytes > 0  # nothing views that one: pooled


def test_changing_an_array_or_cpu_tensor_after_logging_it_changes_nothing_recorded(start):
    import torch

    run = start()
    array = np.full((8, 10, 3), 7, dtype=np.uint8)
    tensor = torch.full((3, 8, 10), 9, dtype=torch.uint8)
    half = torch.full((3, 8, 10), 0.5, dtype=torch.bfloat16)
    strided = torch.arange(3 * 10 * 8, dtype=torch.uint8).reshape(3, 10, 8).transpose(1, 2)  # not contiguous
    expected_strided = strided.permute(1, 2, 0).numpy().copy()
    mask = np.ones((8, 10), dtype=np.uint8)
    run.log({"np": tracklet.Image(array, masks={"m": {"mask_data": mask}}), "torch": tracklet.Image(tensor),
             "bf16": tracklet.Image(half), "strided": tracklet.Image(strided)})
    array[:] = 0
    tensor[:] = 0
    half[:] = 0
    strided.zero_()
    mask[:] = 5
    run.finish()
    recorded = read(run)
    np_image = recorded.images("np")[0]
    assert np_image.to_numpy().max() == 7 and np_image.masks["m"].to_numpy().max() == 1
    assert recorded.images("torch")[0].to_numpy().min() == 9
    assert recorded.images("bf16")[0].to_numpy().min() == 128  # 0.5 → 0.5 × 255, rounded
    assert np.array_equal(recorded.images("strided")[0].to_numpy(), expected_strided)


def test_the_pool_is_bounded():
    pool = buffers.BufferPool(max_free_bytes=3 * 4096, max_buffer_bytes=2 * 4096)
    taken = [pool.take(4096) for _ in range(5)]
    for buffer in taken:
        pool.give(buffer)
    assert pool.free_bytes == 3 * 4096  # the rest were freed
    big = pool.take(3 * 4096)
    pool.give(big)
    assert pool.free_bytes == 3 * 4096  # larger than max_buffer_bytes: never kept
    assert pool.refill() == 0  # the free bytes are at the bound: nothing more is made


def _constructions_that_let_another_thread_run(make, count: int = 20) -> int:
    """How many of ``count`` calls of ``make(i)`` let a thread that wants the GIL run.

    A second thread spins, counting, and never gives up the GIL on its own; the caller's thread
    gets it back after the switch interval. It counts on only when the caller's thread gives the
    GIL up (a C call releasing it), or when the interpreter takes it away after the interval
    (raised to 1 s here, so that a loaded machine's slow calls are not counted as hand-offs: a CI run
    under load saw a 0.1 s interval pass in 4 of 20 torch conversions)."""
    import sys

    spins = [0]
    go, stop = threading.Event(), threading.Event()

    def spin() -> None:
        go.wait()  # (GIL released) woken below: it asks for the GIL at the raised interval while we hold it
        while not stop.is_set():
            spins[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    handed = 0
    made = []
    interval = sys.getswitchinterval()
    try:
        spinner.start()
        sys.setswitchinterval(1.0)
        go.set()  # from now on the spinner waits for the GIL (we never wait a whole interval for it back)
        for i in range(count):
            before = spins[0]
            made.append(make(i))
            handed += spins[0] != before
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    return handed


@pytest.mark.parametrize("kind", ["numpy uint8", "numpy float32", "torch uint8", "torch float32 CHW"])
def test_copying_an_image_never_hands_the_gil_to_a_waiting_thread(kind):
    """The caller's copy keeps the GIL: numpy's copy (and torch's clone) release it for large
    arrays, and a media worker waiting for it then takes it, so the caller waited for the worker's
    next pause (up to the 5 ms switch interval; torch's clone measured 3-4 ms a call so). Arrays
    that are not contiguous are still copied by numpy (which releases the GIL)."""
    import torch

    picture = _pictures(1)[0]
    data = {"numpy uint8": picture, "numpy float32": picture.astype(np.float32) / 255,
            "torch uint8": torch.from_numpy(picture.copy()),
            "torch float32 CHW": torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1)) / np.float32(255))}[kind]
    assert _constructions_that_let_another_thread_run(lambda i: tracklet.Image(data)) <= 3


def _strided_layouts(picture: np.ndarray) -> dict[str, np.ndarray]:
    """Views of ``picture`` (H×W×3) that are not C-contiguous, as callers make them."""
    return {
        "CHW transposed to HWC": np.ascontiguousarray(picture.transpose(2, 0, 1)).transpose(1, 2, 0),
        "Fortran order": np.asfortranarray(picture),
        "BGR to RGB": picture[..., ::-1],
        "upside down": picture[::-1],
        "crop": picture[3:-5, 7:-2],
        "every second row": picture[::2],
        "float32 transposed": (np.ascontiguousarray(picture[:, :picture.shape[1] // 4].transpose(1, 0, 2))
                               / np.float32(255)).transpose(1, 0, 2),
    }


@pytest.mark.parametrize("layout", list(_strided_layouts(np.zeros((4, 4, 3), np.uint8))))
def test_copying_a_strided_array_never_hands_the_gil_to_a_waiting_thread(layout):
    """Arrays that are not C-contiguous (transposed, Fortran-ordered, flipped, cropped, strided)
    are copied with the GIL held too: numpy's strided copy releases it for more than 500 items,
    so a waiting media worker took over the caller for up to its next pause. (Large images, so
    that numpy's copy takes long enough for the waiting thread to get in.)"""
    rng = np.random.default_rng(4)
    picture = rng.integers(0, 256, (1024, 768, 3), dtype=np.uint8)
    data = _strided_layouts(picture)[layout]
    assert not data.flags.c_contiguous
    # Each image is let go at once: its buffer serves the next copy (no fresh pages to map).
    assert _constructions_that_let_another_thread_run(lambda i: tracklet.Image(data) and None) <= 1


def test_strided_arrays_and_tensors_read_back_byte_exact(start):
    """Every strided layout, and a permuted torch tensor, reads back through the read API with the
    pixels of the array as logged, and later changes to the source change nothing recorded."""
    import torch

    run = start()
    picture = _pictures(1)[0]
    layouts = _strided_layouts(picture.copy())
    expected = {name: np.ascontiguousarray(view) for name, view in layouts.items()}
    expected["float32 transposed"] = picture[:, :picture.shape[1] // 4]  # floats in [0, 1]: back to 0-255 exactly
    tensor = torch.from_numpy(picture.copy()).permute(2, 0, 1)  # C×H×W, a strided view
    run.log({name: tracklet.Image(view) for name, view in layouts.items()} | {"tensor": tracklet.Image(tensor)})
    for view in layouts.values():
        view[...] = 0
    tensor.zero_()
    run.finish()
    recorded = read(run)
    for name, pixels in expected.items():
        assert np.array_equal(recorded.images(name)[0].to_numpy(), pixels), name
    assert np.array_equal(recorded.images("tensor")[0].to_numpy(), picture)


def test_a_strided_copy_is_one_span_of_the_pool_and_comes_back():
    """A transposed or flipped view costs one pooled buffer of its own size (the span of a
    permuted or flipped dense block is the block), returned to the pool once the copy is gone;
    a small crop of a large array is not worth its span and is copied by numpy."""
    picture = _pictures(1)[0]
    for view in (picture.transpose(1, 0, 2), picture[::-1, ::-1]):
        keep: list = []
        copy = buffers.copy_array(view, keep)
        assert np.array_equal(copy, view) and [b.nbytes for b in keep] == [-(-view.nbytes // 4096) * 4096]
        del copy
        buffers.release(keep)
        assert buffers.POOL.free_bytes >= view.nbytes
    keep = []
    crop = buffers.copy_array(picture[100:110, 100:110], keep)
    assert keep == [] and np.array_equal(crop, picture[100:110, 100:110])


def test_images_of_every_dtype_and_byte_order_read_back_as_logged(start):
    """A plain numeric array (any native dtype) takes the caller's short path (a copy into a
    pooled buffer, its numpy view made on the worker); a big-endian array, a record array
    or a datetime array takes the general one. Each reads back with the pixels W&B's rules give,
    and changing the source after log() changes nothing recorded."""
    run = start()
    picture = _pictures(1)[0]
    gray = picture[..., 0].copy()
    unit = (picture / 255).astype(np.float32)
    arrays = {
        "uint8": picture.copy(),
        "gray": gray.copy(),
        "bool": gray > 127,
        "float32": unit.copy(),
        "float64 big-endian": unit.astype(">f8"),
        "int64": gray.astype(np.int64),
        "uint16 gray": gray.astype(np.uint16) * 257,
    }
    expected = {"uint8": picture, "gray": gray, "bool": np.where(gray > 127, 255, 0).astype(np.uint8),
                "float32": np.rint(unit.astype(np.float64) * 255).astype(np.uint8),
                "float64 big-endian": np.rint(unit.astype(np.float64) * 255).astype(np.uint8),
                "int64": gray, "uint16 gray": gray.astype(np.uint16) * 257}
    run.log({name: tracklet.Image(array) for name, array in arrays.items()})
    for array in arrays.values():
        array[...] = 0
    run.finish()
    recorded = read(run)
    for name, pixels in expected.items():
        got = recorded.images(name)[0].to_numpy()
        assert got.dtype == pixels.dtype and np.array_equal(got, pixels), name


def test_the_pool_never_hands_one_buffer_to_two_holders():
    """``take`` pops a free buffer without the pool's lock (on the caller's thread): threads
    taking and giving back at once never hold the same buffer together."""
    pool = buffers.BufferPool()
    held: set[int] = set()
    guard = threading.Lock()
    clashes = []

    def churn() -> None:
        for _ in range(3000):
            buffer = pool.take(8192)
            with guard:
                if id(buffer) in held:
                    clashes.append(id(buffer))
                held.add(id(buffer))
            buffer[:16] = 1  # the holder uses it a while
            with guard:
                held.discard(id(buffer))
            pool.give(buffer)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    interval = __import__("sys").getswitchinterval()
    __import__("sys").setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        __import__("sys").setswitchinterval(interval)
    assert clashes == []
    assert pool.free_bytes <= 4 * 8192


@pytest.mark.parametrize("deflater", ["isal", "zlib"])
def test_the_worker_stores_photographs_smaller_than_zlib_level_1_would(deflater, monkeypatch):
    """The worker's PNG deflates Up-filtered rows with ISA-L's level 1 (the media extra's ``isal``)
    or, without it, zlib's run-length strategy: a half and a quarter of the CPU of zlib's level 1
    (what a training step pays for on a busy machine; benchmarks/media.py) and, for
    photograph-like images, smaller files: this guards the choice. Flat images (plots) and noise
    stay as small as before, and every one decodes to the same pixels."""
    import io
    import zlib

    from PIL import Image as PILImage

    from tracklet.media import image
    from tracklet.media.image import fast_png

    if deflater == "isal":
        pytest.importorskip("isal")
        monkeypatch.setattr(image, "_ISAL", image._isal_deflate())
    else:
        monkeypatch.setattr(image, "_ISAL", None)

    y, x = np.mgrid[0:224, 0:224]
    rng = np.random.default_rng(5)
    photo = (np.stack([np.sin(x / 17) * 60 + y / 2, np.cos(y / 23) * 70 + x / 3, (x + y) / 4], -1)
             + rng.normal(0, 4, (224, 224, 3)) + 60).clip(0, 255).astype(np.uint8)
    plot = np.full((224, 224, 3), 255, np.uint8)
    plot[100:110] = 0
    plot[150:200, 20:120] = (10, 200, 30)
    noise = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)

    def level_1_size(pixels):
        rows = pixels.reshape(224, -1)
        filtered = np.concatenate([np.full((224, 1), 2, np.uint8),
                                   np.concatenate([rows[:1], rows[1:] - rows[:-1]])], axis=1)
        return len(zlib.compress(filtered.tobytes(), 1)) + 57  # + the PNG's signature and chunks

    for pixels in (photo, plot, noise):
        png = fast_png(pixels)
        assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(png))), pixels)
    assert len(fast_png(photo)) < 0.95 * level_1_size(photo)
    assert len(fast_png(plot)) <= level_1_size(plot) and len(fast_png(noise)) <= level_1_size(noise) + 64


def test_a_cuda_tensor_is_copied_without_a_device_sync_on_the_caller(start, monkeypatch):
    """No GPU here: a stand-in at the torch boundary plays a CUDA tensor whose host copy completes
    only when its event is waited on (as a non-blocking device-to-host copy does). The caller
    queues the copy and records an event, never waits; the worker waits on the event before it
    reads, so the image is recorded with the tensor's values (zeros, had it read too early)."""
    import torch

    calls: list[tuple[str, str]] = []
    picture = torch.from_numpy(_pictures(1)[0].transpose(2, 0, 1).copy())  # C×H×W, as on a GPU
    pending: list[torch.Tensor] = []

    class Event:
        def record(self) -> None:
            calls.append(("record", threading.current_thread().name))

        def synchronize(self) -> None:
            calls.append(("synchronize", threading.current_thread().name))
            for host in pending:
                host.copy_(picture)  # the device-to-host copy has landed

    class CudaTensor:
        __module__ = "torch.cuda"  # what tracklet dispatches on: a torch tensor
        requires_grad = False
        device = torch.device("cuda", 0)

        def detach(self):
            return self

        def to(self, device, non_blocking=False):
            calls.append((f"to {device} non_blocking={non_blocking}", threading.current_thread().name))
            host = torch.zeros_like(picture)  # pinned memory the copy will fill later
            pending.append(host)
            return host

    monkeypatch.setattr(torch.cuda, "Event", Event)
    run = start()
    run.log({"gpu": tracklet.Image(CudaTensor())})
    caller = threading.current_thread().name
    run.finish()
    # the caller queued the copy and recorded the event, and never waited; the worker waited, after
    assert [what for what, thread in calls if thread == caller] == ["to cpu non_blocking=True", "record"]
    assert [what for what, thread in calls if thread != caller] == ["synchronize"]
    assert calls[-1][0] == "synchronize"
    assert np.array_equal(read(run).images("gpu")[0].to_numpy(), picture.numpy().transpose(1, 2, 0))


def test_one_refill_maps_every_buffer_a_burst_found_missing():
    """A burst of copies that found the pool empty raises its reserve by one each; the worker's
    next refill maps them all, so the next burst copies into mapped buffers even when the worker
    gets through only a job or two between bursts (a loaded machine). Before, a refill mapped at
    most 8, and bursts of 50 outran a worker slower than the caller: every copy faulted ~37 pages."""
    pool = buffers.BufferPool()
    size = 224 * 224 * 3
    burst = [pool.take(size) for _ in range(50)]  # none free: each raises the reserve
    assert pool.refill() == 50
    before = _faults()
    again = [pool.take(size) for _ in range(50)]
    assert _faults() - before < 50  # measured before the fix: 42 buffers unmapped, ~1,550 faults
    assert not {id(buffer) for buffer in burst} & {id(buffer) for buffer in again}


def test_a_long_burst_keeps_the_pools_mapped_memory_within_its_bound(start, monkeypatch):
    """Images logged far faster than they are encoded, for long: the pool's buffers are the free
    ones (at most its ``max_free_bytes``) and those that queued items hold (at most the queue's
    bound, the rest dropped), so what it keeps mapped stays within both, and everything it made
    comes back free once the worker has caught up."""
    size = buffers.BufferPool().take(224 * 224 * 3).nbytes
    pool = buffers.BufferPool(max_free_bytes=8 * size)
    monkeypatch.setattr(buffers, "POOL", pool)
    queue = 16
    run = start(settings={"media_queue": queue})
    pictures = _pictures(4)
    bound = pool._max_free + (queue + 2) * size  # + the item being encoded and the one being made
    most = 0
    for _ in range(6):
        gate = _Gate()
        run.log({"img": gate})  # the images wait behind it (one key, one lane)
        for i in range(60):
            run.log({"img": tracklet.Image(pictures[i % 4])})
            most = max(most, pool.mapped_bytes)
        gate.open.set()
        run.flush()
        most = max(most, pool.mapped_bytes)
        assert pool.free_bytes <= pool._max_free
    worker = run._logged
    run.finish()
    assert worker.dropped > 0  # the queue's bound was reached: the burst outran the worker
    assert most <= bound, (most, bound)
    assert pool.mapped_bytes == pool.free_bytes == 0  # finish frees the free ones; none is lent out


def test_a_key_set_first_seen_holding_media_records_whatever_it_holds_later(start, monkeypatch):
    """A key set first logged with media only takes log()'s short path for media (no dict built,
    no scans: Run._prepare is not called), and anything else logged under it later takes the
    general path: floats reach history, a nested dict is flattened, a list of images and a table
    are recorded (the table as it was when logged)."""
    run = start()
    pictures = _pictures(3)
    prepared = []
    general = run._prepare
    monkeypatch.setattr(run, "_prepare", lambda row: prepared.append(tuple(row)) or general(row))
    table = tracklet.Table(columns=["a"], log_mode="MUTABLE")
    table.add_data(1)
    run.log({"img": tracklet.Image(pictures[0]), "t": table})  # first sight: the general path
    run.log({"img": tracklet.Image(pictures[1]), "t": table})  # media only: the short path
    table.add_data(2)  # after its second log: not in that version
    run.log({"img": 2.0, "t": table})
    run.log({"img": {"x": 3.0}, "t": table})
    run.log({"img": [tracklet.Image(pictures[2]), tracklet.Image(pictures[0])], "t": table})
    run.log({"img": tracklet.Image(pictures[1]), "t": table})
    run.finish()
    assert prepared == [("img", "t"), ("img", "t"), ("img", "t"), ("img", "t")]  # steps 0, 2, 3, 4
    recorded = read(run)
    images = recorded.images("img")
    assert [(image.step, image.index) for image in images] == [(0, 0), (1, 0), (4, 0), (4, 1), (5, 0)]
    expected = [pictures[0], pictures[1], pictures[2], pictures[0], pictures[1]]
    assert all(np.array_equal(image.to_numpy(), picture) for image, picture in zip(images, expected))
    history = recorded.history()
    assert history["img"] == [None, None, 2.0, None, None, None]
    assert history["img/x"] == [None, None, None, 3.0, None, None]
    assert [len(recorded.table("t", step=step)) for step in (1, 2)] == [1, 2]


def test_a_run_s_first_burst_finds_buffers_mapped_while_the_encoders_warm_up(start, monkeypatch):
    """The worker's lanes wait for the encoders' warm-up (media.warm: imports, on a thread of its
    own) refilling the copy buffers meanwhile, so a run's second burst of images copies into mapped
    memory even while the worker has recorded nothing yet. Before, a lane imported the encoders
    inside its first job and refilled nothing meanwhile (1-1.5 s at load 15): each of the first
    4-6 bursts of 50 faulted ~1,850 pages on the caller's thread."""
    from tracklet.media import warm

    monkeypatch.setattr(warm.WARM_UP, "done", threading.Event())  # a warm-up that has not finished
    monkeypatch.setattr(warm.WARM_UP, "_thread", threading.Thread(target=lambda: None))
    run = start()
    pictures = _pictures(4)
    for i in range(20):  # the first burst: nothing mapped yet, every copy maps its own
        run.log({"img": tracklet.Image(pictures[i % 4])})
    for _ in range(500):  # the lane refills every 10 ms while it waits
        if buffers.POOL.free_bytes >= 20 * 224 * 224 * 3:
            break
        threading.Event().wait(0.01)
    assert run._logged.recorded == 0  # still warming up
    before = _faults()
    for i in range(20):
        run.log({"img": tracklet.Image(pictures[i % 4])})
    faults = _faults() - before
    warm.WARM_UP.done.set()
    run.finish()
    assert faults < 20 * 37 // 4, faults  # 37 a copy into fresh memory
    assert len(read(run).images("img")) == 40


def test_tracklet_image_is_looked_up_once():
    """``tracklet.Image(x)`` in a training loop: the lazy lookup (a module ``__getattr__`` and
    ``importlib.import_module``, ~50 µs right after a step on the shared VMs) runs once; later
    lookups read a module attribute."""
    from tracklet import media

    assert tracklet.Image is media.Image
    assert vars(tracklet)["Image"] is media.Image


def test_an_image_of_a_file_object_logged_twice_or_read_first_records_its_pixels_each_time(start, tmp_path):
    """An image made of a file object holds a copy of its bytes (media/snapshot.py), which each
    reader read to its end: logged at a second step, or read on the caller's thread first (W&B's
    ``Image.image``, which the worker may be storing at the same time), the next reader found
    nothing and the image was dropped ("not an image Pillow can read")."""
    import io

    from PIL import Image as PILImage

    import tracklet.compat.wandb as wandb

    pixels = _pictures(1)[0][:8, :8]
    path = tmp_path / "picture.png"
    PILImage.fromarray(pixels).save(path)
    run = start()
    with path.open("rb") as handle:
        twice = tracklet.Image(handle)
    run.log({"twice": twice})
    run.log({"twice": twice})
    first = wandb.Image(io.BytesIO(path.read_bytes()))
    assert first.image.size == (8, 8)
    run.log({"read_first": first})
    run.finish()
    recorded = read(run)
    for key, count in (("twice", 2), ("read_first", 1)):
        assert [np.array_equal(image.to_numpy(), pixels) for image in recorded.images(key)] == [True] * count, key
