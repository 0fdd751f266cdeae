"""The device a measurement runs on, never a silent CPU fallback: CPU numbers must not pass for GPU ones.

    python -m bench.devices BACKEND GPU     # prints yes / no / missing; why not, on stderr

asks in a process of its own (bench/gpu_check.sh, bench/gpu_smoke.py), so that the asking one holds no CUDA context.
"""
import sys
import warnings


def use_device(be, gpu):
    """``be.set_device(gpu)`` ('' or None: the CPU); RuntimeError when a GPU was asked for and the backend, seeing no
    CUDA device, fell back to the CPU (after its own warning). Returns the device."""
    device = be.set_device(gpu or "")
    if gpu and device == "cpu":
        raise RuntimeError(f"--gpu {gpu}: {be.name} sees no CUDA device here (is its CUDA build installed?); "
                           "measure it without --gpu")
    return device


def main(argv=None):
    """Whether BACKEND runs --gpu GPU on a GPU: 'yes', 'no' (it would fall back to the CPU) or 'missing' (not
    installed), on stdout; the reason for the last two on stderr."""
    from backends import BackendUnavailable, get_backend
    name, gpu = sys.argv[1:] if argv is None else argv
    try:
        backend = get_backend(name)
    except BackendUnavailable as exc:
        print("missing")
        print(exc, file=sys.stderr)
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # the backend's own fallback warning: the reason is printed below
            use_device(backend, gpu)
    except RuntimeError as exc:
        print("no")
        print(exc, file=sys.stderr)
    else:
        print("yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
