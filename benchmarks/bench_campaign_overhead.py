"""Campaign overhead: a campaign of cheap trials (store, planning, scheduling) vs today's loop.

The same work every way: a small MNIST MLP (hidden [256, 256], random weights, 8-bit rquant,
saved as a checkpoint the campaign names), random bit errors at 5 rates x ``--patterns``
seeded patterns on the first ``--examples`` test images, one torch thread. Configurations:

- loop: ``evaluate_fault_models`` on all rates at once (model and data in memory): today's way;
- loop, tasks of 16: one deployment and clean run, then ``run_trials`` on all rates per chunk
  of 16 seeds, as the campaign's tasks run them, without store, planning or loading: it
  separates what the task split costs from the store and scheduling overhead;
- campaign, in process: ``run_campaign`` with ``InProcessExecutor`` into a fresh store, timed
  from the spec text (parse, plan, load the checkpoint and data, trials, store writes, close);
  the worker's deployment cache is cleared first, as in a fresh ``bitrobust campaign run``;
- campaign, 2 worker processes: ``LocalExecutor(2)``, with the pool's start-up (forkserver)
  and without it (start-up timed apart by a trivial map on the fresh pool).

Interleaved rounds (the first configuration rotates) after one untimed warm-up with 2
patterns; medians. Every campaign's per-trial RErr and faulty error are checked to equal the
loop's (same seeds). Then the store alone: planning, ``set_planned``, ``record`` (one task of
16 synthetic trials per transaction), ``done_ids`` and ``status`` for 10k and 100k trials.

    OMP_NUM_THREADS=1 python benchmarks/bench_campaign_overhead.py \
        [--patterns 40] [--examples 1000] [--rounds 3] [--store-trials 10000 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from bitrobust.campaign import plan as planning
from bitrobust.campaign import runner, worker
from bitrobust.campaign.executors import InProcessExecutor, LocalExecutor, StopFlag
from bitrobust.campaign.spec import parse_spec, spec_hash
from bitrobust.campaign.store import CampaignStore, TrialRecord
from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.data import load_dataset, subset
from bitrobust.evaluate import QuantizedDeployment, clean_run, evaluate_fault_models, run_trials
from bitrobust.faults import RandomBitErrors
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme

RATES = (0.0005, 0.001, 0.005, 0.01, 0.02)
TASK = runner.TASK_SEEDS
WORKERS = 2

LOOP, LOOP16, INPROC, POOL, POOL_WARM = (
    "loop (evaluate_fault_models)",
    "loop, tasks of 16 (no store)",
    "campaign, in process",
    "campaign, 2 worker processes",
    "campaign, 2 workers, pool started",
)


def spec_text(checkpoint: Path, patterns: int, examples: int, rates=RATES) -> str:
    return f"""
name = "overhead"
patterns = {patterns}
seed = 0

[data]
dataset = "mnist"
test_limit = {examples}

[[models]]
name = "mlp"
checkpoint = "{checkpoint}"

[[faults]]
name = "bit-errors"
type = "random_bit_errors"
rates = [{", ".join(repr(r) for r in rates)}]
"""


# -- the compared configurations ---------------------------------------------------------------


def run_loop(model, scheme, data, patterns: int) -> dict[tuple[float, int], tuple[float, float]]:
    faults = [RandomBitErrors(r) for r in RATES]
    evaluation = evaluate_fault_models(model, scheme, data, None, faults, patterns=patterns)
    return {
        (rate, k): (trial.rerr, trial.err_faulty)
        for rate, result in zip(RATES, evaluation.results)
        for k, trial in enumerate(result.trials)
    }


def run_loop16(model, scheme, data, patterns: int) -> dict[tuple[float, int], tuple[float, float]]:
    """The campaign's tasks without the campaign: one deployment and clean run, then
    ``run_trials`` on all rates per chunk of 16 seeds."""
    deployment = QuantizedDeployment(model, scheme)
    clean = clean_run(deployment, data)
    out = {}
    for start in range(0, patterns, TASK):
        seeds = range(start, min(start + TASK, patterns))
        faults = [RandomBitErrors(rate) for rate in RATES]
        results = run_trials(deployment, faults, seeds, data, clean)
        for rate, rows in zip(RATES, results):
            for seed, trial in zip(seeds, rows):
                out[(rate, seed)] = (trial.rerr, trial.err_faulty)
    return out


def run_campaign_once(text: str, store: Path, executor, data_dir) -> None:
    spec = parse_spec(text, "bench spec")
    runner.run_campaign(spec, text, store, executor, data_dir=data_dir)


def store_results(store: Path) -> dict[tuple[float, int], tuple[float, float]]:
    with contextlib.closing(CampaignStore.open_existing(store)) as opened:
        return {
            (r.params["x"], r.params["pattern"]): (r.metrics["rerr"], r.metrics["err_faulty"])
            for r in opened.records()
        }


# -- a cheap breakdown: wrap the runner's and worker's steps with timers -----------------------


@contextlib.contextmanager
def timers(into: dict[str, float]) -> Iterator[None]:
    """Accumulate the seconds spent in the campaign's steps (wrappers cost ~1 us a call)."""
    targets: list[tuple[Any, str, str]] = [
        (worker, "prepared", "load checkpoint + data, clean run (worker.prepared)"),
        (worker, "build_fault_model", "build fault models"),
        (planning, "plan_trials", "plan trials (plan_trials)"),
        (runner, "_check_fault_models", "check fault models"),
        (runner, "_tasks", "group trials into tasks"),
        (CampaignStore, "create_or_open", "open store (create, lock, schema)"),
        (CampaignStore, "set_planned", "store.set_planned"),
        (CampaignStore, "done_ids", "store.done_ids"),
        (CampaignStore, "record", "store.record"),
        (CampaignStore, "status", "store.status"),
        (CampaignStore, "close", "close store"),
    ]
    import bitrobust.evaluate as evaluate

    targets.append((evaluate, "run_trials", "trials (run_trials: sample, inject, forward)"))
    saved = []
    depth = [0]  # only the outermost timed step counts (status calls done_ids, ...)
    for owner, name, label in targets:
        original = owner.__dict__[name]
        function = original.__func__ if isinstance(original, classmethod) else original

        def timed(*args, _function=function, _label=label, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    into[_label] += time.perf_counter() - start

        functools.update_wrapper(timed, function)
        setattr(owner, name, classmethod(timed) if isinstance(original, classmethod) else timed)
        saved.append((owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


# -- the store alone ---------------------------------------------------------------------------


def bench_store(checkpoint: Path, sizes: list[int], folder: Path) -> list[tuple[str, int, float]]:
    """(operation, trials, seconds) for plans of each size: 10 rates x size/10 patterns."""
    rows = []
    metrics = {
        "err_clean": 0.0951,
        "err_faulty": 0.1234,
        "rerr": 0.1302,
        "accuracy_loss": 0.0283,
        "flips": 2143,
        "faulty_macs": 0,
        "examples": 1000,
        "errors_faulty": 123,
        "errors_robust": 130,
    }
    environment = worker.environment()
    rates = tuple(round(0.001 * (k + 1), 4) for k in range(10))
    for size in sizes:
        text = spec_text(checkpoint, size // len(rates), 1000, rates)
        spec = parse_spec(text, "bench spec")
        instances = planning.model_instances(spec, [])
        start = time.perf_counter()
        trials = planning.plan_trials(spec, instances, {})
        rows.append(
            ("plan_trials (content-addressed ids)", len(trials), time.perf_counter() - start)
        )
        start = time.perf_counter()
        tasks, members = runner._tasks(trials, spec, None)
        rows.append(("group into tasks of 16", len(trials), time.perf_counter() - start))
        path = folder / f"store-{size}.db"
        with CampaignStore.create_or_open(path, spec_hash(spec), text) as store:
            start = time.perf_counter()
            store.set_planned(t.trial_id for t in trials)
            rows.append(("store.set_planned", len(trials), time.perf_counter() - start))
            start = time.perf_counter()
            done = store.done_ids()
            todo = [t for t in trials if t.trial_id not in done]
            rows.append(
                ("done_ids + todo filter, empty store", len(trials), time.perf_counter() - start)
            )
            build = write = 0.0
            for chunk in members:
                start = time.perf_counter()
                now = time.time()
                records = [
                    TrialRecord(
                        trial_id=t.trial_id,
                        params=t.params(),
                        seed=t.seed,
                        metrics=metrics,
                        wall_s=0.01,
                        finished_at=now,
                        **environment,
                    )
                    for t in chunk
                ]
                middle = time.perf_counter()
                store.record(records)
                build += middle - start
                write += time.perf_counter() - middle
            rows.append(("build TrialRecords (runner side)", len(todo), build))
            rows.append(("store.record, 16 per transaction", len(todo), write))
            start = time.perf_counter()
            done = store.done_ids()
            todo = [t for t in trials if t.trial_id not in done]
            rows.append(
                ("done_ids + todo filter, full store", len(trials), time.perf_counter() - start)
            )
            assert not todo and len(done) == len(trials)
            start = time.perf_counter()
            status = store.status()
            rows.append(("store.status", len(trials), time.perf_counter() - start))
            assert status["done"] == len(trials)
        rows.append(("store file size, bytes", len(trials), float(path.stat().st_size)))
    return rows


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=40)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store-trials", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials = len(RATES) * args.patterns

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        folder = Path(tmp)
        checkpoint = folder / "mlp.safetensors"
        torch.manual_seed(0)
        architecture = Architecture.for_dataset("mlp", "mnist", {"hidden": [256, 256]})
        scheme = QuantScheme.preset("rquant", bits=8)
        save_checkpoint(checkpoint, architecture.build(), architecture, scheme, {})
        loaded = load_checkpoint(checkpoint)  # the loop runs what the campaign loads
        model, scheme = loaded.model.eval(), loaded.scheme
        data = subset(load_dataset("mnist", "test", args.data_dir), args.examples).tensors

        counter = iter(range(10**6))
        results: dict[str, dict[tuple[float, int], tuple[float, float]]] = {}
        breakdown: list[dict[str, float]] = []
        startup: list[float] = []

        def campaign(executor, patterns: int, into: dict[str, float] | None = None):
            store = folder / f"run-{next(counter)}.db"
            text = spec_text(checkpoint, patterns, args.examples)
            with timers(into) if into is not None else contextlib.nullcontext():
                run_campaign_once(text, store, executor, args.data_dir)
            return store

        def in_process(patterns: int, timed: bool):
            worker._DEPLOYMENTS.clear()  # a fresh CLI process has loaded nothing
            parts: dict[str, float] = defaultdict(float)
            start = time.perf_counter()
            store = campaign(InProcessExecutor(), patterns, parts)
            parts["total"] = time.perf_counter() - start
            if timed:
                breakdown.append(parts)
            return store

        def pool(patterns: int, timed: bool) -> tuple[Path, float, float]:
            start = time.perf_counter()
            executor = LocalExecutor(WORKERS)
            try:
                warm = ["cpu"] * (2 * WORKERS)  # start the workers
                list(executor.map(worker.environment, warm, StopFlag()))
                started = time.perf_counter()
                store = campaign(executor, patterns)
                finished = time.perf_counter()
            finally:
                executor.close()
            if timed:
                startup.append(started - start)
            return store, finished - start, finished - started

        configs: dict[str, Callable[[int, bool], Any]] = {
            LOOP: lambda p, timed: run_loop(model, scheme, data, p),
            LOOP16: lambda p, timed: run_loop16(model, scheme, data, p),
            INPROC: in_process,
            POOL: pool,
        }
        for run in configs.values():  # warm-up, untimed
            run(2, False)

        seconds: dict[str, list[float]] = defaultdict(list)
        names = list(configs)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                start = time.perf_counter()
                out = configs[name](args.patterns, True)
                elapsed = time.perf_counter() - start
                if name == POOL:
                    store, elapsed, warm_elapsed = out
                    seconds[POOL_WARM].append(warm_elapsed)
                    results[name] = store_results(store)
                elif name == INPROC:
                    results[name] = store_results(out)
                else:
                    results[name] = out
                seconds[name].append(elapsed)

        reference = results[LOOP]
        assert len(reference) == trials
        same = {name: results[name] == reference for name in (LOOP16, INPROC, POOL)}

        store_rows = bench_store(checkpoint, args.store_trials, folder)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(
        f"MNIST MLP [256, 256] (random weights), 8-bit rquant, {args.examples} test images, "
        f"random bit errors at {len(RATES)} rates x {args.patterns} patterns = {trials} trials; "
        f"1 torch thread; median of {args.rounds} interleaved rounds"
    )
    print()
    print(
        "| configuration | trials | s/trial (median) | ratio vs loop | overhead ms/trial vs loop |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in (LOOP, LOOP16, INPROC, POOL, POOL_WARM):
        per = median[name] / trials
        over = (median[name] - median[LOOP]) / trials * 1e3
        over_text = "" if name == LOOP else f"{over:+.2f}"
        print(
            f"| {name} | {trials} | {per:.4f} | {median[name] / median[LOOP]:.2f}x | {over_text} |"
        )
    print()
    print(
        f"Pool start-up ({WORKERS} workers forked from the forkserver, which imports torch once): "
        f"{statistics.median(startup):.2f} s (median)."
    )
    over16 = (median[INPROC] - median[LOOP16]) / trials * 1e3
    print(
        f"Campaign in process vs the same tasks without a store (loop, tasks of 16): "
        f"{over16:+.2f} ms/trial."
    )
    for name, equal in same.items():
        verdict = "equal to" if equal else "DIFFERENT FROM"
        print(f"Per-trial RErr and faulty error of '{name}': {verdict} the loop's (same seeds).")

    print()
    print(f"Breakdown of 'campaign, in process' (median over rounds, {trials} trials):")
    print()
    print("| step | s per campaign | ms/trial | share |")
    print("| --- | ---: | ---: | ---: |")
    labels = [key for key in breakdown[0] if key != "total"]
    parts = {key: statistics.median(b[key] for b in breakdown) for key in labels}
    total = statistics.median(b["total"] for b in breakdown)
    other = statistics.median(b["total"] - sum(b[k] for k in labels) for b in breakdown)
    rows = sorted(parts.items(), key=lambda kv: -kv[1]) + [("rest (spec parse, meta, ...)", other)]
    for key, value in rows:
        print(f"| {key} | {value:.3f} | {value / trials * 1e3:.3f} | {value / total:.1%} |")
    print(f"| total | {total:.3f} | {total / trials * 1e3:.3f} | 100% |")

    print()
    print("Store alone (synthetic trials; one SQLite file in WAL mode):")
    print()
    print("| operation | trials | s | us/trial |")
    print("| --- | ---: | ---: | ---: |")
    for operation, count, value in store_rows:
        if operation.startswith("store file size"):
            print(f"| {operation} | {count} | {value:.0f} | {value / count:.0f} B/trial |")
        else:
            print(f"| {operation} | {count} | {value:.3f} | {value / count * 1e6:.1f} |")


if __name__ == "__main__":
    main()
