"""Dropping files from the operating system's page cache, and asking how much of them is still there.

The loading benchmark reads features once from memory (files just written) and once from the disk, as a training run
over more features than memory holds does (VQA-v2's grid features are ~31 GB). Linux only: elsewhere, and on file
systems that keep files in memory (tmpfs), nothing can be dropped and ``resident_fraction`` says so.
"""
import ctypes
import ctypes.util
import mmap
import os


def drop(paths):
    """Write back and drop the pages of ``paths`` from the page cache; False where the system has no way to."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)   # dirty pages are never dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def resident_fraction(paths):
    """Fraction of the pages of ``paths`` in the page cache (mincore(2) on a mapping that touches no page), or None
    where this cannot be asked."""
    try:
        libc = _libc()
    except (OSError, AttributeError):   # no C library to load, or no mmap / mincore (Windows)
        return None
    page = mmap.PAGESIZE
    resident = total = 0
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            continue
        pages = (size + page - 1) // page
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                    return None
                resident += sum(v & 1 for v in vec)
            finally:
                libc.munmap(ctypes.c_void_p(addr), size)
        finally:
            os.close(fd)
        total += pages
    return resident / total if total else None


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


def describe_disk(path):
    """'<file system> on <device>[, rotational]' holding ``path`` (from /proc/mounts and /sys), or None."""
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            mounts = [line.split()[:3] for line in f]
    except OSError:
        return None
    real = os.path.realpath(path)
    best = None
    for device, point, fstype in mounts:
        point = point.replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[1])):
            best = (device, point, fstype)
    if best is None:
        return None
    device, _, fstype = best
    text = f"{fstype} on {device}"
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/dev/") else None
    for candidate in filter(None, (name, name and _parent_disk(name))):
        try:
            with open(f"/sys/class/block/{candidate}/queue/rotational", encoding="utf-8") as f:
                return text + (", rotational" if f.read().strip() == "1" else ", not rotational")
        except OSError:
            continue
    return text


def _parent_disk(name):
    """The whole disk of a partition (sda1 -> sda, nvme0n1p2 -> nvme0n1), via /sys."""
    link = os.path.realpath(f"/sys/class/block/{name}")
    return os.path.basename(os.path.dirname(link))
