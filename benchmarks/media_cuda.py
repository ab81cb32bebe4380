"""The CUDA tensor path of ``tracklet.Image`` on a real GPU (issue #16): the caller queues a
non-blocking device-to-host copy and records an event, never a device sync; the media worker waits
on the event before it reads, so the recorded image holds the values the GPU computed.

    python benchmarks/media_cuda.py      # needs torch with a CUDA device

Each of 5 steps queues ~0.3 s of GPU work (``torch.cuda._sleep``), then writes the tensor (an
alternating pattern, so a read of the previous step's values would show), then times
``tracklet.Image(x)``: a caller that synced would take the 0.3 s, and the stream would be idle
when it returned. Then 300 ``Image`` calls on an idle GPU give the steady caller cost, and every
recorded PNG is compared byte for byte with the tensor it came from. The worker runs without a
run (``LoggedWorker`` with a list for records), so only numpy, torch, Pillow and protobuf are needed.

Session 14 (2026-12-04, one NVIDIA H200, torch 2.11.0+cu130; the device machine runs the lead's
checkout, main at 90ceae5, whose CUDA path (media/snapshot.py, image.py, buffers.py) this branch
leaves unchanged, through these same steps inline):
callers 96-260 µs while 0.3 s of GPU work was queued (the stream still busy after 4 of 5 calls
returned, so none waited for it); steady ``Image(cuda 3x224x224)`` p50 33.1 µs, p99 2.0 ms; 5 of 5
recorded images byte-exact, 306 records, none dropped.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch
    from PIL import Image as Pil

    import tracklet
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.storage import artifact_dir
    from tracklet.media.worker import LoggedWorker

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (tests/test_media_caller.py checks the path with a stand-in)")
        return 0
    root = Path(tempfile.mkdtemp(prefix="media-cuda-"))
    records: list = []
    worker = LoggedWorker(root, records.append, lambda token, message: print("WARNING", message), workers=1,
                          max_pending=1000)
    generator = torch.Generator(device="cuda").manual_seed(0)
    pattern = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, device="cuda", generator=generator)
    x = torch.zeros_like(pattern)
    torch.cuda.synchronize()
    worker.submit(0, 0.0, "warm", [tracklet.Image(pattern)])
    worker.flush(60)
    wanted = {}
    waited = 0
    for step in range(1, 6):
        torch.cuda._sleep(600_000_000)  # ~0.3 s of GPU time queued before the values exist
        values = pattern if step % 2 else 255 - pattern
        x.copy_(values)
        began = time.perf_counter()
        image = tracklet.Image(x)
        seconds = time.perf_counter() - began
        busy = not torch.cuda.current_stream().query()
        waited += seconds > 0.2
        worker.submit(step, 0.0, "gpu", [image])
        wanted[step] = values.permute(1, 2, 0).cpu().numpy()
        print(f"step {step}: Image(cuda) caller {seconds * 1e6:.0f} us; GPU still busy after it returned: {busy}")
    latencies = []
    for step in range(300):
        began = time.perf_counter()
        image = tracklet.Image(pattern)
        latencies.append(time.perf_counter() - began)
        worker.submit(100 + step, 0.0, "steady", [image])
    print(f"steady Image(cuda 3x224x224) caller p50 {statistics.median(latencies) * 1e6:.1f} us, "
          f"p99 {np.percentile(latencies, 99) * 1e6:.1f} us")
    closed = worker.close(120)
    blobs = FsspecBlobStore(artifact_dir(root))
    exact = 0
    for record in records:
        media = record.media
        if media.key == "gpu":
            got = np.asarray(Pil.open(io.BytesIO(bytes(blobs.read_bytes(media.digest)))))
            exact += bool(np.array_equal(got, wanted[media.step]))
    print(f"closed {closed}; {len(records)} records, {worker.dropped} dropped; {exact} of 5 GPU images byte-exact; "
          f"{waited} caller(s) waited for the GPU")
    return 0 if exact == 5 and waited == 0 and closed else 1


if __name__ == "__main__":
    sys.exit(main())
