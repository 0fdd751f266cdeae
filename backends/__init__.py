"""Backend registry: the only place that imports a framework.

``get_backend('torch')`` or ``get_backend('paddle')`` imports that framework on first use and returns
its :class:`backends.base.Backend`. Nothing in ``core/`` imports this package's subfolders.
"""
from __future__ import annotations

import importlib

from backends.base import Backend, BackendUnavailable

__all__ = ["Backend", "BackendUnavailable", "available_backends", "get_backend"]

BACKENDS = {
    "paddle": ("paddlepaddle==3.3.1", "backends.paddle.backend"),
    "torch": ("torch==2.13.0", "backends.torch.backend"),
}
_cache = {}


def available_backends() -> list[str]:
    """Names of the backends whose framework imports here."""
    names = []
    for name in BACKENDS:
        try:
            get_backend(name)
            names.append(name)
        except BackendUnavailable:
            pass
    return names


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}")
    if name not in _cache:
        package, module = BACKENDS[name]
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            raise BackendUnavailable(
                f"backend {name!r} needs {package} (import failed: {missing}); "
                f"install it with `pip install {package}` or choose --backend="
                f"{'torch' if name == 'paddle' else 'paddle'}") from exc
        _cache[name] = mod.BACKEND_CLASS()
    return _cache[name]
