"""Run a campaign into a store: train what is missing, retrain the models whose accelerator asks
for approximation-aware retraining (``retrain_epochs``), then every trial not yet recorded.

Rerunning the same command continues where a killed run stopped: checkpoints are files named
by fingerprint, and the store knows which trial ids are done. Each finished task's trials are
written in one transaction, so a crash loses at most the trials in flight and never records
one twice. With ``adaptive`` in the spec, cells whose confidence interval is still wider than
the target get more patterns (the next pattern seeds), round after round, up to
``max_patterns``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitrobust.campaign import plan as planning
from bitrobust.campaign import worker
from bitrobust.campaign.executors import Executor, InProcessExecutor, StopFlag
from bitrobust.campaign.spec import CampaignSpec, spec_hash
from bitrobust.campaign.store import CampaignStore, TrialRecord
from bitrobust.errors import BitrobustError

log = logging.getLogger(__name__)

TASK_SEEDS = 16
"""Pattern seeds per task: a task is one deployment and fault entry at all its swept values, for
up to this many seeds. Its patterns share draws and passes through the data
(:func:`bitrobust.evaluate.run_trials`); a crash loses at most one task per worker."""


@dataclass(frozen=True)
class RunSummary:
    store: str
    total: int
    done: int
    new: int
    trained: int
    seconds: float
    interrupted: bool

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def default_checkpoint_dir(store: str | os.PathLike[str]) -> Path:
    """Checkpoints of a store's trained models: ``<store>.checkpoints/`` beside it."""
    store = Path(store)
    return store.with_name(store.name + ".checkpoints")


def run_campaign(
    spec: CampaignSpec,
    spec_text: str,
    store_path: str | os.PathLike[str],
    executor: Executor | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: StopFlag | None = None,
) -> RunSummary:
    """Run every trial of ``spec`` that ``store_path`` lacks; returns what was done."""
    started = time.perf_counter()
    executor = executor or InProcessExecutor()
    stop = StopFlag() if stop is None else stop
    data_dir = None if data_dir is None else str(data_dir)
    checkpoint_dir = Path(checkpoint_dir or default_checkpoint_dir(store_path))
    with CampaignStore.create_or_open(store_path, spec_hash(spec), spec_text, force=force) as store:
        store.set_meta("name", spec.name)
        jobs = planning.training_jobs(spec, checkpoint_dir)
        trained = _train(jobs, executor, data_dir, stop)
        instances = planning.model_instances(spec, jobs)
        layouts = _layouts(spec, instances, data_dir)
        done = store.done_ids()
        trials = planning.plan_trials(spec, instances, layouts)
        counts = _pattern_counts(spec, trials, done)
        if counts:  # adaptive stopping: as far as earlier rounds went
            trials = planning.plan_trials(spec, instances, layouts, counts)
        _check_fault_models(trials, data_dir)
        store.set_planned(t.trial_id for t in trials)
        new = 0
        while not stop:
            todo = [t for t in trials if t.trial_id not in done]
            new += _run_trials(
                todo, store, executor, data_dir, spec, stop, progress, checkpoint_dir
            )
            done = store.done_ids()
            if spec.adaptive is None or stop:
                break
            more = _adaptive_round(spec, instances, layouts, store, counts)
            if not more:
                break
            trials = planning.plan_trials(spec, instances, layouts, counts)
            store.add_planned(t.trial_id for t in trials)
        status = store.status()
    return RunSummary(
        store=str(store_path),
        total=status["total"],
        done=status["done"],
        new=new,
        trained=trained,
        seconds=round(time.perf_counter() - started, 2),
        interrupted=bool(stop),
    )


def _train(
    jobs: list[planning.TrainingJob], executor: Executor, data_dir: str | None, stop: StopFlag
) -> int:
    """The training stage: train the recipes whose checkpoint is missing."""
    missing = [job for job in jobs if not Path(job.checkpoint).is_file()]
    for job in missing:  # a bad recipe fails here, before any work
        worker.build_recipe(job.recipe)
    if not missing:
        return 0
    log.info(f"training {len(missing)} model(s)")
    items = [
        {
            "recipe": job.recipe,
            "fingerprint": job.fingerprint,
            "checkpoint": job.checkpoint,
            "data_dir": data_dir,
        }
        for job in missing
    ]
    count = 0
    for index, result in executor.map(worker.run_training, items, stop):
        count += 1
        log.info(
            f"trained {missing[index].model} (training seed {missing[index].training_seed}) "
            f"in {result['seconds']:.1f} s"
        )
    if count < len(missing):
        raise _Interrupted()
    return count


class _Interrupted(BitrobustError):
    def __init__(self) -> None:
        super().__init__("interrupted during training; rerun the same command to continue")


def _check_fault_models(trials: Sequence[planning.Trial], data_dir: str | None) -> None:
    """Build every fault model once, so that a bad value (a voltage outside a chip's profiled
    range, say) fails before any trial runs."""
    seen = set()
    multipliers = {t.setting.accelerator["multiplier"] for t in trials if t.setting.accelerator}
    if multipliers:
        from bitrobust.data import evoapprox_dir
        from bitrobust.hw import load_multiplier

        for name in sorted(multipliers):
            load_multiplier(name, evoapprox_dir(data_dir))
    for trial in trials:
        key = repr(trial.setting.key())
        if key not in seen:
            seen.add(key)
            try:
                worker.build_fault_model(trial.setting.__dict__, data_dir)
            except BitrobustError as exc:
                raise BitrobustError(f"fault {trial.setting.fault!r}: {exc}") from None


def _layouts(
    spec: CampaignSpec, instances: list[planning.ModelInstance], data_dir: str | None
) -> dict[str, planning.ModelLayout]:
    """Stored parameters and bit widths of the deployments that per-layer/per-bit sweeps need."""
    layouts = {}
    for instance in instances:
        for fault in spec.fault_models_for(instance.model):
            if not getattr(fault, "per_layer", False) and not getattr(fault, "per_bit", False):
                continue
            accelerator = None if fault.accelerator is None else fault.accelerator.key()
            key = planning.layout_key(instance, accelerator)
            if key not in layouts:
                stored, bits = worker.layout(_task(instance, accelerator, spec, data_dir))
                layouts[key] = planning.ModelLayout(stored, bits)
    return layouts


def _task(
    instance: planning.ModelInstance,
    accelerator: dict[str, Any] | None,
    spec: CampaignSpec,
    data_dir: str | None,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    retrained = None
    if accelerator is not None and checkpoint_dir is not None:
        retrained = planning.retrained_checkpoint(checkpoint_dir, instance, accelerator)
    return {
        "checkpoint": instance.checkpoint,
        "fingerprint": instance.fingerprint,
        "accelerator": accelerator,
        "data": planning.data_key(spec, instance),
        "batch_size": spec.data.batch_size,
        "data_dir": data_dir,
        "retrained": retrained,
    }


def _retrain(
    todo: Sequence[planning.Trial],
    spec: CampaignSpec,
    executor: Executor,
    data_dir: str | None,
    checkpoint_dir: Path,
    stop: StopFlag,
) -> int:
    """The retraining stage: approximation-aware retraining of each (model, multiplier) that
    the trials to run need and whose retrained weights are not saved yet, spread over the
    workers (each would otherwise retrain every deployment it builds)."""
    jobs: dict[str, dict[str, Any]] = {}
    for trial in todo:
        task = _task(trial.instance, trial.setting.accelerator, spec, data_dir, checkpoint_dir)
        path = task["retrained"]
        if path is not None and path not in jobs and not Path(path).is_file():
            jobs[path] = task
    if not jobs:
        return 0
    log.info(f"retraining {len(jobs)} model(s) for their multipliers")
    items = list(jobs.values())
    count = sum(1 for _ in executor.map(worker.run_retraining, items, stop))
    if count < len(items):
        raise _Interrupted()
    return count


def _tasks(
    trials: Sequence[planning.Trial],
    spec: CampaignSpec,
    data_dir: str | None,
    checkpoint_dir: Path | None = None,
):
    """Trials grouped by deployment and fault entry (all its swept values: one draw per seed
    serves every value), in chunks of :data:`TASK_SEEDS` seeds."""
    groups: dict[tuple[Any, ...], list[planning.Trial]] = {}
    for trial in trials:
        setting = trial.setting
        key = (
            trial.instance.fingerprint,
            trial.instance.model,
            setting.fault,
            setting.layer,
            setting.bit,
            repr(setting.accelerator),
            repr(setting.mitigation),
        )
        groups.setdefault(key, []).append(trial)
    tasks, members = [], []
    keys: dict[int, str] = {}  # one repr per setting object

    def key_of(setting: planning.FaultSetting) -> str:
        if id(setting) not in keys:
            keys[id(setting)] = repr(setting.key())
        return keys[id(setting)]

    # one deployment's tasks one after another: a worker builds each deployment once
    for _, group in sorted(groups.items(), key=lambda item: (item[0][0], item[0][5])):
        seeds = sorted({t.seed for t in group})
        chunk_of = {seed: i // TASK_SEEDS for i, seed in enumerate(seeds)}
        chunks: list[list[planning.Trial]] = [[] for _ in range(-(-len(seeds) // TASK_SEEDS))]
        for t in group:
            chunks[chunk_of[t.seed]].append(t)
        for chunk in chunks:
            settings: dict[str, int] = {}
            by_key: dict[str, planning.FaultSetting] = {}
            for t in chunk:
                key = key_of(t.setting)
                settings.setdefault(key, len(settings))
                by_key.setdefault(key, t.setting)
            first = chunk[0]
            task = _task(first.instance, first.setting.accelerator, spec, data_dir, checkpoint_dir)
            task["settings"] = [by_key[k].__dict__.copy() for k in settings]
            task["trials"] = [(t.trial_id, settings[key_of(t.setting)], t.seed) for t in chunk]
            tasks.append(task)
            members.append(chunk)
    return tasks, members


def _run_trials(
    todo: list[planning.Trial],
    store: CampaignStore,
    executor: Executor,
    data_dir: str | None,
    spec: CampaignSpec,
    stop: StopFlag,
    progress: Callable[[int, int], None] | None,
    checkpoint_dir: Path | None = None,
) -> int:
    if not todo:
        return 0
    if checkpoint_dir is not None:
        _retrain(todo, spec, executor, data_dir, checkpoint_dir, stop)
    tasks, members = _tasks(todo, spec, data_dir, checkpoint_dir)
    environment = worker.environment()
    new = finished = 0
    log.info(f"{len(todo)} trial(s) to run in {len(tasks)} task(s) on {executor.workers} worker(s)")
    for index, results in executor.map(worker.run_task, tasks, stop):
        by_id = {t.trial_id: t for t in members[index]}
        now = time.time()
        records = [
            TrialRecord(
                trial_id=row["trial_id"],
                params={**by_id[row["trial_id"]].params(), "fault_model": row["fault_model"]},
                seed=row["seed"],
                metrics=row["metrics"],
                wall_s=row["wall_s"],
                finished_at=now,
                **environment,
            )
            for row in results
        ]
        new += store.record(records)
        finished += len(records)
        if progress is not None:
            progress(finished, len(todo))
    return new


def _pattern_counts(
    spec: CampaignSpec, planned: Sequence[planning.Trial], done: set[str]
) -> dict[tuple[Any, ...], int]:
    """Patterns per cell, with adaptive stopping: the ``planned`` ones (the spec's), or more
    where an earlier adaptive round went further (the next seeds' trials are done)."""
    counts: dict[tuple[Any, ...], int] = {}
    if spec.adaptive is None:
        return counts
    last: dict[tuple[str, str], planning.Trial] = {}  # per model and setting: its last pattern
    for trial in planned:
        if trial.setting.kind != "fault_free":
            last[(trial.instance.fingerprint + trial.instance.model, repr(trial.setting.key()))] = (
                trial
            )
    for trial in last.values():
        key = planning.cell_key(trial.instance.model, trial.setting)
        data = planning.data_key(spec, trial.instance)
        count = max(counts.get(key, 0), trial.pattern + 1)
        first = trial.seed - trial.pattern  # the spec's seed, or the fault entry's own
        while count < spec.adaptive.max_patterns and (
            planning.trial_id(trial.instance, trial.setting, data, first + count) in done
        ):
            count += 1
        counts[key] = count
    return counts


def _adaptive_round(
    spec: CampaignSpec,
    instances: list[planning.ModelInstance],
    layouts: dict[str, planning.ModelLayout],
    store: CampaignStore,
    counts: dict[tuple[Any, ...], int],
) -> int:
    """Raise the pattern count of every cell whose interval is too wide; returns how many
    patterns were added in all."""
    assert spec.adaptive is not None
    adaptive = spec.adaptive
    planned = planning.plan_trials(spec, instances, layouts, counts)
    done = {r.trial_id: r for r in store.records()}
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for trial in planned:
        record = done.get(trial.trial_id)
        if record is not None:
            key = planning.cell_key(trial.instance.model, trial.setting)
            rows.setdefault(key, []).append(record.flat())
    added = 0
    for key, cell_rows in rows.items():
        current = counts.get(key, spec.patterns)
        more = _more_patterns(cell_rows, current, spec)
        more = min(more, adaptive.max_patterns - current)
        if more > 0:
            counts[key] = current + more
            added += more
    if added:
        log.info(f"adaptive stopping: {added} more pattern(s) for cells still too wide")
    return added


def _more_patterns(rows: list[dict[str, Any]], current: int, spec: CampaignSpec) -> int:
    """Patterns to add to a cell that has ``current`` patterns per training seed: with one
    seed, :func:`~bitrobust.campaign.statistics.patterns_needed`; with several, double the
    count while the two-level interval (:func:`~bitrobust.campaign.statistics.cell_statistics`)
    is wider than the target."""
    from bitrobust.campaign.statistics import cell_statistics, patterns_needed

    adaptive = spec.adaptive
    assert adaptive is not None
    metric = adaptive.metric
    minimum = adaptive.min_patterns or min(spec.patterns, adaptive.max_patterns)
    if len({row["training_seed"] for row in rows}) == 1:
        return patterns_needed(
            [float(row[metric]) for row in rows],
            target_halfwidth=adaptive.target_halfwidth,
            max_patterns=adaptive.max_patterns,
            min_patterns=minimum,
            confidence=spec.confidence,
        )
    (cell,) = cell_statistics(rows, [], metric, confidence=spec.confidence)
    halfwidth = cell.halfwidth()
    narrow = halfwidth is not None and halfwidth <= adaptive.target_halfwidth
    if current >= adaptive.max_patterns or (narrow and current >= minimum):
        return 0
    return max(current, minimum - current, 1)


@contextlib.contextmanager
def stop_on_signals(on_abandon: Callable[[], None] | None = None) -> Iterator[StopFlag]:
    """SIGINT/SIGTERM once: finish the trials in flight and stop; twice: abandon them at once.
    Off the main thread (where handlers cannot be installed) the flag is never set."""
    stop = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.stopping:
            if on_abandon is not None:
                on_abandon()
            raise KeyboardInterrupt
        stop.stopping = True
        log.warning(
            f"{signal.Signals(signum).name}: finishing the trials in flight (again to abandon them)"
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
