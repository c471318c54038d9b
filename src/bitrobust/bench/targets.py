"""The performance targets (issue #13) judged from one benchmark run's rows.

Each target compares bitrobust with one contender of one task, as a ratio of median times in
the same run (the ratio of minimums is reported beside it): either a *speed-up* (the
contender's time over bitrobust's, at least ``threshold``) or a *cost* (bitrobust's time over
the contender's, at most ``threshold``). Targets of tasks not run are left out; a target whose
contender did not run (a peer tool not installed) is reported as not measured, never as met.
Start-up and the demo's wall time are measured outside the suite (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    task: str
    contender: str
    kind: str  # "speed-up": contender / bitrobust >= threshold; "cost": bitrobust / contender <=
    threshold: float
    text: str


TARGETS = (
    Target("inject_p1", "limit", "cost", 2.0, "injection at p = 1 %: ≤ 2× the bare limit"),
    Target("inject_p1", "pytorchfi", "speed-up", 100.0, "injection at p = 1 %: ≥ 100× PyTorchFI"),
    Target("inject_p10", "mrfi", "speed-up", 3.0, "injection at p = 10 %: ≥ 3× MRFI"),
    Target("inject_p1", "mrfi", "speed-up", 3.0, "injection at p = 1 %: ≥ 3× MRFI"),
    Target("inject_p0.1", "mrfi", "speed-up", 3.0, "injection at p = 0.1 %: ≥ 3× MRFI"),
    Target("inject_p0.01", "mrfi", "speed-up", 3.0, "injection at p = 0.01 %: ≥ 3× MRFI"),
    Target("inject_p0.01_10M", "limit", "cost", 3.0, "10 M parameters, p = 0.01 %: ≤ 3× the limit"),
    Target("campaign100", "loop", "speed-up", 3.0, "100 patterns × 10k images: ≥ 3× the loop"),
    Target("campaign100", "mrfi", "speed-up", 3.0, "100 patterns × 10k images: ≥ 3× MRFI"),
    Target("approx_lenet5", "float", "cost", 5.0, "approximate LeNet-5: ≤ 5× the float model"),
    Target("approx_mlp", "float", "cost", 5.0, "approximate MLP: ≤ 5× the float model"),
    Target(
        "accumulator_lenet5",
        "product_faults",
        "cost",
        1.2,
        "LeNet-5, accumulator faults: ≤ 1.2× product faults",
    ),  # fmt: skip
    Target(
        "accumulator_mlp",
        "product_faults",
        "cost",
        1.2,
        "MLP, accumulator faults: ≤ 1.2× product faults",
    ),  # fmt: skip
    Target("randbet_epoch", "normal_epoch", "cost", 2.2, "RandBET epoch: ≤ 2.2× a normal epoch"),
)


def judge(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per target of the tasks in ``rows``: ``{target, task, contender, kind,
    threshold, measured, measured_min, met}``; ``measured`` is None (and ``met`` False) when
    the contender's row is missing (a peer tool not installed)."""
    times = {(row["task"], row["contender"]): row for row in rows}
    tasks = {row["task"] for row in rows}
    judged = []
    for target in (target for target in TARGETS if target.task in tasks):
        ours, theirs = (
            times.get((target.task, "bitrobust")),
            times.get((target.task, target.contender)),
        )
        measured = measured_min = None
        if ours is not None and theirs is not None:
            measured = _ratio(target, ours["median_s"], theirs["median_s"])
            measured_min = _ratio(target, ours["min_s"], theirs["min_s"])
        met = measured is not None and (
            measured >= target.threshold
            if target.kind == "speed-up"
            else measured <= target.threshold
        )
        judged.append(
            {
                "target": target.text,
                "task": target.task,
                "contender": target.contender,
                "kind": target.kind,
                "threshold": target.threshold,
                "measured": measured,
                "measured_min": measured_min,
                "met": met,
            }
        )
    return judged


def _ratio(target: Target, ours: float, theirs: float) -> float:
    return theirs / ours if target.kind == "speed-up" else ours / theirs


def describe(entry: Mapping[str, Any]) -> str:
    """The measured ratio in words, e.g. ``2.31× (min 3.06×)`` or ``not measured``."""
    if entry["measured"] is None:
        return "not measured"
    return f"{entry['measured']:.2f}× (min {entry['measured_min']:.2f}×)"
