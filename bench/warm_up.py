"""The warm-up rule every train-step measurement shares when it compares with the original code (bench/original.py).

A CPU train step needs a few steps to reach its steady time (allocator pools, oneDNN primitive caches, page faults of
the Adam state): the original TRAR-VQA code took 10.3, 10.5, 7.8, 6.4, 6.8, 5.8 s for its first steps. So a fixed
warm-up count either wastes time or measures a cold step. The rule: run steps until the last WINDOW step times lie
within TOLERANCE of each other (max / min - 1), at most CAP steps; then the caller times its measured steps.
"""
import time

WINDOW = 3        # steps whose times must agree
TOLERANCE = 0.10  # max / min - 1 over the window
CAP = 12          # warm-up steps at most (a machine whose load changes never settles)
RULE = f"until the last {WINDOW} step times are within {TOLERANCE:.0%} (max/min), at most {CAP} steps"


def is_stable(times, window=WINDOW, tolerance=TOLERANCE):
    """True when the last ``window`` of ``times`` lie within ``tolerance`` of each other."""
    if len(times) < window:
        return False
    last = times[-window:]
    return max(last) <= min(last) * (1.0 + tolerance)


def run_until_stable(step, window=WINDOW, tolerance=TOLERANCE, cap=CAP, clock=time.perf_counter):
    """Call ``step()`` until ``is_stable`` holds for the step times or ``cap`` steps ran; returns (step times,
    whether they settled)."""
    times = []
    while len(times) < cap and not is_stable(times, window, tolerance):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return times, is_stable(times, window, tolerance)
