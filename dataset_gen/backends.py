"""Where shard tasks run: in this process, a local process pool, or a Ray cluster.

Every backend runs the same pure task, ``function(plan, index) -> result``, and yields
results as they finish (in any order). Results travel back to the caller, which alone
writes files: a Ray cluster therefore needs no filesystem shared with the driver, and a
dataset is the same whichever backend made it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

__all__ = ["BACKENDS", "default_workers", "run_tasks"]

BACKENDS: tuple[str, ...] = ("local", "ray")


def default_workers() -> int:
    """The CPUs this process may use (its affinity set, not the machine's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
                               initializer=_ignore_interrupts)
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


def _ignore_interrupts() -> None:
    """Pool workers leave Ctrl-C (sent to the whole process group) to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
            ray.init(num_cpus=workers, **options)
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
        process). ``ray``: Ray tasks, on the cluster at ``ray_address`` (``auto`` finds a
        running one) or on a local Ray with ``workers`` CPUs when it is None.
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
