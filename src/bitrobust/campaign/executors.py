"""Where a campaign's work runs: this process, a local process pool, or a Ray cluster.

An executor maps a function of :mod:`bitrobust.campaign.worker` over items (plain dicts) and
yields ``(index, result)`` as results arrive, in any order; the runner records each. It keeps
at most a few items per worker in flight, so a stop request (:class:`StopFlag`) is honoured
quickly: nothing new is started, the items in flight finish and are yielded. A worker process
that dies (killed, out of memory) loses only its item, which is retried on a fresh worker up to
``retries`` times; an error raised by the work itself (a :class:`BitrobustError`) is not
retried but raised. Every worker runs with one intra-op thread, so the same item gives the same
floating-point result on every executor.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bitrobust.errors import BitrobustError

EXECUTORS: tuple[str, ...] = ("local", "ray")
RETRIES = 2
IN_FLIGHT_PER_WORKER = 2

log = logging.getLogger(__name__)


class StopFlag:
    """Set by a signal handler: finish what is in flight, start nothing new."""

    def __init__(self) -> None:
        self.stopping = False

    def __bool__(self) -> bool:
        return self.stopping


def _worker_setup(threads: int) -> None:
    """In each worker: one thread (reproducible sums), and signals are the parent's business."""
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where there is one: a clean server process imports torch and the worker
    once and forks each worker from it (no threads or locks of this process are inherited, and
    a worker starts in a fraction of a second); else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "bitrobust.campaign.worker"])
        return context
    return multiprocessing.get_context("spawn")


class Executor(ABC):
    """Runs work items; see the module docstring."""

    workers: int

    @abstractmethod
    def map(
        self, function: Callable[[Any], Any], items: Sequence[Any], stop: StopFlag
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """One worker: this process (no start-up cost; what ``--workers 1`` uses)."""

    workers = 1

    def map(
        self, function: Callable[[Any], Any], items: Sequence[Any], stop: StopFlag
    ) -> Iterator[tuple[int, Any]]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in every other executor's workers
        try:
            for index, item in enumerate(items):
                if stop:
                    return
                yield index, function(item)
        finally:
            torch.set_num_threads(threads)


class LocalExecutor(Executor):
    """A pool of ``workers`` processes on this machine, forked from a clean server process
    (:func:`_context`: safe after torch has started its own threads in this one)."""

    def __init__(self, workers: int, retries: int = RETRIES, threads: int = 1) -> None:
        if workers < 1:
            raise BitrobustError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.retries = retries
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None

    def _fresh_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=_context(),
            initializer=_worker_setup,
            initargs=(self.threads,),
        )
        return self._pool

    def map(
        self, function: Callable[[Any], Any], items: Sequence[Any], stop: StopFlag
    ) -> Iterator[tuple[int, Any]]:
        pool = self._pool or self._fresh_pool()
        waiting = list(range(len(items)))[::-1]  # a stack: pop() takes the next in order
        attempts = [0] * len(items)
        running: dict[Future, int] = {}
        while running or (waiting and not stop):
            while waiting and not stop and len(running) < IN_FLIGHT_PER_WORKER * self.workers:
                index = waiting.pop()
                attempts[index] += 1
                running[pool.submit(function, items[index])] = index
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = []
            for future in done:
                index = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken.append(index)
                    continue
                yield index, result
            if broken:  # a worker died: every item in flight is lost with the pool
                lost = broken + list(running.values())
                running.clear()
                for index in lost:
                    if attempts[index] > self.retries:
                        raise BitrobustError(
                            f"a worker died {attempts[index]} times running item {index} "
                            "(out of memory?); giving up"
                        )
                log.warning(f"a worker died; retrying {len(lost)} item(s) on a fresh pool")
                waiting.extend(sorted(lost, reverse=True))
                pool = self._fresh_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abandon(self) -> None:
        """Stop at once: kill the workers, drop what is in flight."""
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class RayExecutor(Executor):
    """Ray tasks: a local Ray instance with ``workers`` CPUs, or the cluster at ``address``.
    Needs the optional extra ``bitrobust[ray]``; the workers must have bitrobust installed and
    see the data folder (``BITROBUST_DATA_DIR`` is passed on)."""

    def __init__(
        self, workers: int, address: str | None = None, retries: int = RETRIES, threads: int = 1
    ) -> None:
        try:
            import ray
        except ImportError:
            raise BitrobustError("--executor ray needs Ray: pip install 'bitrobust[ray]'") from None
        self.workers = workers
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("BITROBUST_")}
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    configure_logging=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local instance"
                raise BitrobustError(f"cannot start Ray at {where}: {exc}") from None
            self._started = True
        self._call = ray.remote(num_cpus=1, max_retries=retries)(_ray_call)
        self._threads = threads

    def map(
        self, function: Callable[[Any], Any], items: Sequence[Any], stop: StopFlag
    ) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        waiting = list(range(len(items)))[::-1]
        running: dict[Any, int] = {}
        while running or (waiting and not stop):
            while waiting and not stop and len(running) < IN_FLIGHT_PER_WORKER * self.workers:
                index = waiting.pop()
                running[self._call.remote(function, items[index], self._threads)] = index
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                index = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if isinstance(cause, BitrobustError):
                        raise BitrobustError(
                            str(cause.args[0]) if cause.args else str(cause)
                        ) from None
                    raise
                except ray.exceptions.WorkerCrashedError:
                    raise BitrobustError(
                        f"a Ray worker died running item {index} on every retry; giving up"
                    ) from None
                yield index, result

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


_RAY_THREADS_SET = False


def _ray_call(function: Callable[[Any], Any], item: Any, threads: int) -> Any:
    global _RAY_THREADS_SET
    if not _RAY_THREADS_SET:
        import torch

        torch.set_num_threads(threads)
        _RAY_THREADS_SET = True
    return function(item)


def make_executor(kind: str, workers: int | None = None, address: str | None = None) -> Executor:
    """``local`` (this process for one worker, else a process pool) or ``ray``; ``workers``
    defaults to the number of cores."""
    workers = workers or os.cpu_count() or 1
    if kind == "local":
        return InProcessExecutor() if workers == 1 else LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    raise BitrobustError(f"unknown executor {kind!r} (known: {', '.join(EXECUTORS)})")
