"""Whether a backend runs --gpu GPU on a GPU, asked in a process of its own.

    python -m tests.gpu.device_probe BACKEND GPU     # prints yes / no / missing; why not, on stderr

The question is bench.devices.use_device's, the check `python -m bench --gpu` makes; tests/gpu/gpu_check.sh,
tests/gpu/smoke.py and the `gpu` tests ask it in a child process, so that the asking one holds no CUDA context (a GPU
in exclusive-process mode would refuse the run that follows).
"""
import sys
import warnings

from bench.devices import use_device


def main(argv=None):
    """'yes', 'no' (it would fall back to the CPU) or 'missing' (not installed) on stdout; the reason for the last two
    on stderr."""
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
