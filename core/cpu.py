"""What the CPU is, read once from /proc/cpuinfo, for the backends' choice of matmul kernels.

Both frameworks bundle Intel MKL, which on AMD CPUs does not use the instruction sets the CPU has:
- Paddle's MKL (mklml 2019) falls back to a generic path; MKL_DEBUG_CPU_TYPE names the path to take instead.
  Measured on a 2-core AMD EPYC with AVX-512 (docs/benchmarks.md): a (4096 x 512) x (512 x 2048) matmul at
  111 GFLOP/s by default, 205 with type 5 (AVX2), 425 with type 7 (AVX-512 of Skylake-X: F, CD, BW, DQ, VL).
  Type 6 is the Xeon Phi path (instructions no EPYC has) and is never chosen.
- torch's MKL (2024.2) ignores MKL_DEBUG_CPU_TYPE and runs its AVX2 code there (130-180 GFLOP/s); torch's oneDNN
  picks its kernels by the instruction sets alone (250-360 GFLOP/s on the same shapes), see backends/torch/cpu_ops.py.
Elsewhere (Intel CPUs, other systems) nothing is known here and the libraries keep their own choice.
"""
import functools

AVX512_SKX = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


@functools.lru_cache(maxsize=None)
def cpu_info(path="/proc/cpuinfo"):
    """(vendor_id, set of flags) of the first CPU listed; ('', empty set) when unreadable."""
    vendor, flags = "", frozenset()
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if vendor and flags:
                    break
    except OSError:
        pass
    return vendor, flags


def is_amd(info=None):
    vendor, _ = info or cpu_info()
    return vendor == "AuthenticAMD"


def has_avx512(info=None):
    """True when the CPU has Skylake-X's AVX-512 set (F, CD, BW, DQ, VL)."""
    _, flags = info or cpu_info()
    return all(flag in flags for flag in AVX512_SKX)


def mkl_debug_cpu_type(info=None):
    """The MKL_DEBUG_CPU_TYPE for Paddle's MKL on this CPU: '7' (AVX-512) or '5' (AVX2) on AMD CPUs, else None."""
    info = info or cpu_info()
    if not is_amd(info):
        return None
    if has_avx512(info):
        return "7"
    if "avx2" in info[1] and "fma" in info[1]:
        return "5"
    return None
