"""How many CPUs a command may use: its share of a shared machine, never more.

A command that starts more threads or workers than there are free CPUs makes everyone
slower, itself included (the co-search with torch's default threads took 3x its idle time
next to one busy process). `usable_cpus` is the number to size thread pools and worker
pools with: the CPUs this process may run on (affinity and cgroup quota), less those other
processes keep busy right now, at least one.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

__all__ = ["allowed_cpus", "busy_elsewhere", "usable_cpus"]


def _cgroup_quota() -> float | None:
    """CPUs granted by a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota, if any."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def allowed_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def _running_tasks() -> int | None:
    """Runnable tasks on the machine now (``/proc/loadavg``'s 4th field, this one included)."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_elsewhere(samples: int = 5, interval_s: float = 0.02) -> int:
    """CPUs kept busy by other processes: the median runnable count over a few samples,
    less this process (whose own threads are idle while it measures)."""
    counts = []
    for sample in range(samples):
        if sample:
            time.sleep(interval_s)
        count = _running_tasks()
        if count is not None:
            counts.append(count)
    if not counts:
        return 0
    counts.sort()
    return max(0, counts[len(counts) // 2] - 1)


def usable_cpus(requested: int | None = None) -> int:
    """CPUs to size a thread or worker pool with on a machine shared with other work.

    Parameters
    ----------
    requested : int or None
        An explicit count from the user (a config's ``threads`` or ``workers``); ``None``
        or ``0`` means "choose". An explicit count is capped at the CPUs this process may
        run on, never raised.

    Returns
    -------
    int
        ``min(requested, allowed)`` when given, else the allowed CPUs less those busy with
        other work; always at least 1.
    """
    allowed = allowed_cpus()
    if requested:
        return max(1, min(int(requested), allowed))
    return max(1, allowed - busy_elsewhere())
