"""The device a measurement runs on, never a silent CPU fallback: CPU numbers must not pass for GPU ones.

tests/gpu/device_probe.py asks the same question in a process of its own, for the GPU checks (tests/gpu/).
"""

from core.distributed import GPUUnavailable


def use_device(be, gpu):
    """``be.set_device(gpu)`` ('' or None: the CPU); RuntimeError when a GPU was asked for and the backend sees no
    CUDA device (its set_device refuses it, core.distributed.GPUUnavailable, or falls back to the CPU). Returns the
    device."""
    try:
        device = be.set_device(gpu or "")
    except GPUUnavailable:
        device = "cpu"
    if gpu and device == "cpu":
        raise RuntimeError(f"--gpu {gpu}: {be.name} sees no CUDA device here (is its CUDA build installed?); "
                           "measure it without --gpu")
    return device
