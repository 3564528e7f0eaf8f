"""Where shard tasks run: in this process, a local process pool, or a Ray cluster.

Every backend runs the same pure task, ``function(plan, index) -> result``, and yields
results as they finish (in any order). Results travel back to the caller, which alone
writes files: a Ray cluster therefore needs no filesystem shared with the driver, and a
dataset is the same whichever backend made it.

Helpers die with the driver, even when it is killed with SIGKILL: a pool worker (forked
by the forkserver, not by the driver) asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``) and watches the driver itself, so it ends within a second of the
driver; the forkserver and the resource tracker then see their last client gone and end
too. A local Ray (``ray.address`` null) is a private one started by
``ray.init(address="local")``: its GCS, raylet, monitors and workers end with the driver
(Ray's own fate sharing), but Ray 2.x's per-node ``DashboardAgent`` and
``RuntimeEnvAgent`` were seen to outlive a SIGKILLed driver (still there 20 s later); ray.init
offers no option to tie them, so after a SIGKILL end them by the process group
(``kill -9 -PGID``) or run ``ray stop`` if no other Ray of yours runs on the machine.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["BACKENDS", "run_tasks"]

BACKENDS: tuple[str, ...] = ("local", "ray")


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_INTERVAL_S = 0.5


def _start_time(pid: int) -> str | None:
    """A process's start time (``/proc/PID/stat`` field 22): with the pid, its identity
    (a pid alone may be reused); None if it is gone or there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _die_with(driver: int, started: str | None) -> None:
    """Kill this process once ``driver`` is gone (checked every half second)."""
    while True:
        time.sleep(_WATCH_INTERVAL_S)
        if started is not None:
            gone = _start_time(driver) != started
        else:  # no /proc: a pid check only
            try:
                os.kill(driver, 0)
                gone = False
            except ProcessLookupError:
                gone = True
            except PermissionError:
                gone = False
        if gone:
            os.kill(os.getpid(), signal.SIGKILL)


def _init_worker(driver: int, started: str | None) -> None:
    """Pool worker set-up: leave Ctrl-C to the driver; die with the driver and with the parent."""
    # Ctrl-C (sent to the whole process group) is the driver's to handle
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # Linux: the kernel kills us when our parent (the forkserver) dies
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the watcher below still ends us with the driver
    # the parent is the forkserver, which outlives the driver while we run: watch the driver
    threading.Thread(target=_die_with, args=(driver, started), name="die-with-driver", daemon=True).start()


def _run_local(function: Callable, plan: Any, indices: Sequence[int], workers: int) -> Iterator[Any]:
    if workers == 1 or len(indices) <= 1:
        for index in indices:
            yield function(plan, index)
        return
    # forkserver: workers start from a clean interpreter, not a fork of a process that may
    # hold threads (pyarrow's pools, tqdm's monitor), which can deadlock a forked child
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # the server imports the task's module once; every worker forks with it loaded
        context.set_forkserver_preload([function.__module__])
    pool = ProcessPoolExecutor(max_workers=min(workers, len(indices)), mp_context=context,
                               initializer=_init_worker, initargs=(os.getpid(), _start_time(os.getpid())))
    # at most two tasks per worker in flight: results are whole shards, held until written
    pending = list(indices)[::-1]
    running = set()
    try:
        while pending or running:
            while pending and len(running) < 2 * workers:
                running.add(pool.submit(function, plan, pending.pop()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:
        # Ctrl-C or a failed task: stop now. Workers only compute (this process writes the
        # shards), so ending them loses no finished shard and leaves no partial file; waiting
        # for them instead can hang on a pool whose workers were interrupted.
        for future in running:
            future.cancel()
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_ray(function: Callable, plan: Any, indices: Sequence[int], workers: int,
             address: str | None) -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        raise ImportError("backend = 'ray' needs Ray: pip install 'dance-cosearch[ray]'") from None
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "configure_logging": False}
        if address:
            ray.init(address=address, **options)
        else:
            # "local": always a new, private Ray of our own size, even when a cluster runs
            # on this machine (without it ray.init would join that one and refuse num_cpus)
            ray.init(address="local", num_cpus=workers, **options)
    try:
        remote = ray.remote(num_cpus=1)(function)
        plan_ref = ray.put(plan)
        capacity = 2 * max(1, int(ray.cluster_resources().get("CPU", workers)))
        pending = list(indices)[::-1]
        running: list = []
        while pending or running:
            while pending and len(running) < capacity:
                running.append(remote.remote(plan_ref, pending.pop()))
            finished, running = ray.wait(running, num_returns=1)
            for reference in finished:
                yield ray.get(reference)
    finally:
        if started:
            ray.shutdown()


def run_tasks(function: Callable[[Any, int], Any], plan: Any, indices: Sequence[int], backend: str = "local",
              workers: int = 1, ray_address: str | None = None) -> Iterator[Any]:
    """Run ``function(plan, index)`` for every index; yield results as they complete.

    Parameters
    ----------
    function : callable
        A module-level (picklable) function.
    plan : object
        Its shared, picklable first argument (sent once per task locally, once per run on Ray).
    indices : sequence of int
        The tasks.
    backend : {"local", "ray"}
        ``local``: a process pool of ``workers`` processes (``workers = 1`` runs in this
        process; its workers die with this process, even on SIGKILL). ``ray``: Ray tasks, on
        the cluster at ``ray_address`` (``auto`` finds a running one) or, when it is None,
        on a new private local Ray with ``workers`` CPUs (never a running cluster).
    workers : int
    ray_address : str or None

    Yields
    ------
    object
        Each task's result, in completion order.
    """
    if backend == "local":
        yield from _run_local(function, plan, indices, workers)
    elif backend == "ray":
        yield from _run_ray(function, plan, indices, workers, ray_address)
    else:
        raise ValueError(f"backend = {backend!r}: expected one of {list(BACKENDS)}")
