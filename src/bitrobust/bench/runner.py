"""Run the tasks: contenders interleaved in one process for time, a fresh child each for memory.

Time: per task, every contender is prepared and run once untimed (warm-up), then ``repeats``
rounds run each contender once, round-robin, the starting contender rotating every round, so
that a slow phase of a busy machine hits all of them alike; a row reports the median and the
minimum, and ``outcome``, what the last timed run computed when it is a number (a campaign's
mean RErr, the fraction of RandBET steps with a perturbed pass).

Peak RSS: each (task, contender) runs once more, alone, in a fresh process forked from a server
that has only imported torch and bitrobust; the row's ``peak_rss_mb`` is that process's
``ru_maxrss`` (setup + preparation + one run), and ``machine.baseline_rss_mb`` is the same for a
process that does nothing, the floor under every row.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TextIO

import numpy as np
import torch

from bitrobust.bench import contenders as peers
from bitrobust.bench.targets import judge
from bitrobust.bench.tasks import TASKS, Settings
from bitrobust.errors import BitrobustError

PEERS_BY_CONTENDER = {"pytorchfi": "pytorchfi", "mrfi": "mrfi"}


def machine_info(settings: Settings, repeats: int) -> dict[str, Any]:
    from bitrobust import __version__
    from bitrobust.provenance import code_fingerprint

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "bitrobust": __version__,
        "code": code_fingerprint(),
        "pytorchfi": peers.tool_version("pytorchfi"),
        "mrfi": peers.tool_version("mrfi"),
        "threads": torch.get_num_threads(),
        "mode": "quick" if settings.quick else "full",
        "repeats": repeats,
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child_run(task_name: str, contender: str, settings: Settings) -> float:
    """In a fresh process: set up, prepare and run one contender once; its peak RSS in MB."""
    torch.set_num_threads(settings.threads)
    if contender:
        task = TASKS[task_name]
        entry = task.contenders[contender](task.setup(settings))
        entry.run(0)
    return _peak_rss_mb()


class FreshProcesses:
    """Runs each call in a new process forked from a server that has imported torch."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["torch", "bitrobust.bench.tasks"])

    def peak_rss_mb(self, task_name: str, contender: str, settings: Settings) -> float:
        with ProcessPoolExecutor(1, mp_context=self.context) as pool:
            return pool.submit(_child_run, task_name, contender, settings).result()


def select_tasks(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(TASKS)
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise BitrobustError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    return list(dict.fromkeys(names))


def run_suite(
    task_names: Sequence[str] | None = None,
    settings: Settings | None = None,
    repeats: int = 3,
    memory: bool = True,
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Time every contender of the chosen tasks; the JSON-ready result (machine, rows, skipped).

    A peer tool that is not installed is skipped with a notice (and listed in ``skipped``);
    ``memory=False`` leaves out the child processes (``peak_rss_mb`` is then None). Progress
    goes to ``log`` (default: stderr).
    """
    log = log or sys.stderr
    if repeats < 1:
        raise BitrobustError(f"repeats must be >= 1, got {repeats}")
    settings = settings or Settings()
    names = select_tasks(task_names)
    missing = {
        contender: reason
        for contender, tool in PEERS_BY_CONTENDER.items()
        if (reason := peers.missing_tool(tool))
    }
    for contender, reason in missing.items():
        print(f"bench: skipping contender {contender}: {reason}", file=log)
    processes = FreshProcesses() if memory else None
    result: dict[str, Any] = {
        "machine": machine_info(settings, repeats),
        "rows": [],
        "skipped": [{"contender": c, "reason": r} for c, r in missing.items()],
    }
    if processes is not None:
        result["machine"]["baseline_rss_mb"] = processes.peak_rss_mb("", "", settings)
    for name in names:
        task = TASKS[name]
        chosen = [c for c in task.contenders if c not in missing]
        print(f"bench: {name}: setting up", file=log, flush=True)
        context = task.setup(settings)
        work = task.work(context)
        entries = {c: task.contenders[c](context) for c in chosen}
        notes = {c: entry.note for c, entry in entries.items()}
        for entry in entries.values():
            entry.run(0)  # warm-up, untimed
        times: dict[str, list[float]] = {c: [] for c in chosen}
        outcomes: dict[str, Any] = {}
        for round_index in range(repeats):
            shift = round_index % len(chosen)
            for contender in chosen[shift:] + chosen[:shift]:
                start = time.perf_counter()
                outcome = entries[contender].run(round_index + 1)
                times[contender].append(time.perf_counter() - start)
                outcomes[contender] = outcome if isinstance(outcome, float) else None
            print(
                f"bench: {name}: round {round_index + 1}/{repeats}: "
                + ", ".join(f"{c} {times[c][-1]:.3f} s" for c in chosen),
                file=log,
                flush=True,
            )
        del entries, context
        base = statistics.median(times["bitrobust"])
        for contender in chosen:
            median = statistics.median(times[contender])
            rss = None
            if processes is not None:
                rss = processes.peak_rss_mb(name, contender, settings)
            result["rows"].append(
                {
                    "task": name,
                    "contender": contender,
                    "median_s": median,
                    "min_s": min(times[contender]),
                    "peak_rss_mb": rss,
                    "ratio": median / base,
                    "work": work,
                    "note": notes[contender],
                    "outcome": outcomes[contender],
                }
            )
    result["targets"] = judge(result["rows"])
    return result
