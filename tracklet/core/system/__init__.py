"""System metrics, sampled on a thread of their own: never on the training thread.

``SystemMonitor`` (monitor.py) drives a list of samplers, one class per source: ``HostSampler``
(psutil: CPU, memory, disk, network, this process tree) and ``NvidiaGpuSampler`` (NVML). A new
source (Apple, AMD, TPU) is one more ``Sampler`` subclass added to ``default_samplers``.
"""

from tracklet.core.system.sampler import Sampler, SamplerInfo
from tracklet.core.system.monitor import SystemMonitor, default_samplers

__all__ = ["Sampler", "SamplerInfo", "SystemMonitor", "default_samplers"]
