"""What an executor runs: a training job, a retraining job (approximation-aware retraining of a
model for an accelerator's multiplier, saved beside the checkpoints), or a task of trials on one
deployment.

All three take and return plain data (dicts, lists, numbers), so any executor — this process, a
process pool, Ray workers on other machines — can run them and gets the same result. A worker
keeps the last deployments it built (model, quantization or accelerator, the test data and its
fault-free run), so the trials of one model cost one load. Trials run with one intra-op thread
per worker (set by the executor), which keeps their floating-point results identical on every
executor.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from bitrobust.errors import BitrobustError

_DEPLOYMENTS: OrderedDict[str, Any] = OrderedDict()
_KEEP_DEPLOYMENTS = 4
_CHIPS: dict[str, Any] = {}
_TRAINING: dict[tuple[str, str | None], Any] = {}


def environment(device: str = "cpu") -> dict[str, str]:
    """The provenance columns of a trial row."""
    import torch

    from bitrobust import __version__

    return {"package_version": __version__, "torch_version": torch.__version__, "device": device}


# -- training --------------------------------------------------------------------------------


def build_recipe(recipe: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """The untrained model, its architecture, scheme and training config of a recipe (raises
    BitrobustError for an inconsistent recipe, e.g. clipping without w_max)."""
    import torch

    from bitrobust.models.architecture import Architecture
    from bitrobust.quant import BINARY, QuantScheme
    from bitrobust.train import TrainConfig

    torch.manual_seed(recipe["training_seed"])
    architecture = Architecture.for_dataset(
        recipe["architecture"], recipe["dataset"], recipe["options"]
    )
    model = architecture.build()
    if recipe["quantization"] == "binary":
        scheme = BINARY
    else:
        scheme = QuantScheme.preset(
            recipe["quantization"], bits=recipe["bits"], w_max=recipe["w_max"]
        )
    config = TrainConfig.defaults_for(
        model,
        method=recipe["method"],
        epochs=recipe["epochs"],
        batch_size=recipe["batch_size"],
        lr=recipe["lr"],
        optimizer=recipe["optimizer"],
        weight_decay=recipe["weight_decay"],
        loss=recipe["loss"],
        hinge_b=recipe.get("hinge_b"),
        w_max=recipe["w_max"],
        bit_error_rate=recipe["bit_error_rate"],
        label_smoothing=recipe.get("label_smoothing"),
        fixed_pattern_seed=recipe.get("fixed_pattern_seed"),
        curriculum_threshold=recipe.get("curriculum_threshold"),
        seed=recipe["training_seed"],
        progress=False,
    )
    return model, architecture, scheme, config


def run_training(job: dict[str, Any]) -> dict[str, Any]:
    """Train one recipe and save its checkpoint atomically; ``job``: ``recipe``,
    ``fingerprint``, ``checkpoint``, ``data_dir``."""
    from bitrobust.checkpoint import save_checkpoint
    from bitrobust.data import load_splits, subset
    from bitrobust.train import train

    started = time.perf_counter()
    recipe = job["recipe"]
    model, architecture, scheme, config = build_recipe(recipe)
    train_set, _ = load_splits(recipe["dataset"], job["data_dir"])
    train_set = subset(train_set, recipe["train_limit"])
    history = train(model, scheme, train_set, config)
    path = Path(job["checkpoint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_checkpoint(
        partial,
        model,
        architecture,
        scheme,
        {**config.to_dict(), "fingerprint": job["fingerprint"], "loss_history": history.loss},
    )
    os.replace(partial, path)
    return {
        "fingerprint": job["fingerprint"],
        "checkpoint": str(path),
        "seconds": time.perf_counter() - started,
    }


# -- trials ----------------------------------------------------------------------------------


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the trials of ``task``: one deployment, the fault models ``settings`` (one spec entry
    at several swept values; patterns of one seed share their draws, as in
    :func:`bitrobust.evaluate.run_trials`) and ``trials``, a list of ``(trial_id, setting index,
    seed)``. Returns one dict per trial: ``trial_id``, ``seed``, ``metrics``, ``wall_s``."""
    from bitrobust.evaluate import run_trials

    deployment, data, clean = prepared(task)
    fault_models = [build_fault_model(s, task["data_dir"]) for s in task["settings"]]
    if task["settings"][0].get("mitigation") is not None:
        return [
            _mitigated_trial(task, deployment, data, clean, fault_models[index], trial_id, seed)
            for trial_id, index, seed in task["trials"]
        ]
    seeds = sorted({seed for _, _, seed in task["trials"]})
    started = time.perf_counter()
    results = run_trials(deployment, fault_models, seeds, data, clean, task["batch_size"])
    wall = (time.perf_counter() - started) / (len(seeds) * len(fault_models))
    column = {seed: k for k, seed in enumerate(seeds)}
    return [
        {
            "trial_id": trial_id,
            "seed": seed,
            "fault_model": fault_model_name(task["settings"][index], fault_models[index]),
            "metrics": trial_metrics(results[index][column[seed]]),
            "wall_s": wall,
        }
        for trial_id, index, seed in task["trials"]
    ]


def fault_model_name(setting: dict[str, Any], fault_model: Any) -> str:
    """The row's ``fault_model`` column: the fault model's name (every parameter), or ``none``."""
    return "none" if setting["kind"] == "fault_free" else fault_model.name


def _mitigated_trial(
    task: dict[str, Any],
    deployment: Any,
    data: Any,
    clean: Any,
    fault_model: Any,
    trial_id: str,
    seed: int,
) -> dict[str, Any]:
    """One pattern, mitigated on a copy of the deployment (seeded by the pattern seed), then
    evaluated: the row's ``err_faulty`` is the error after mitigation."""
    from bitrobust.evaluate import run_trial
    from bitrobust.hw.mitigation import MitigationConfig, mitigate

    started = time.perf_counter()
    options = {
        k: v for k, v in task["settings"][0]["mitigation"].items() if k not in ("label", "name")
    }
    config = MitigationConfig(**options, seed=seed)
    pattern = fault_model.sample(deployment.target, seed)
    images = labels = None
    if config.method != "none":
        images, labels = training_data(task).tensors
    mitigated = mitigate(deployment, pattern, config, images, labels)
    result = run_trial(
        mitigated.deployment, fault_model, seed, data, clean, task["batch_size"], mitigated.pattern
    )
    return {
        "trial_id": trial_id,
        "seed": seed,
        "fault_model": fault_model_name(task["settings"][0], fault_model),
        "metrics": trial_metrics(result),
        "wall_s": time.perf_counter() - started,
    }


def training_data(task: dict[str, Any]) -> Any:
    """The training split of the task's dataset (retuning examples, calibration images), read
    once per worker: every mitigated trial needs it."""
    from bitrobust.data import load_dataset

    key = (task["data"]["dataset"], task["data_dir"])
    if key not in _TRAINING:
        _TRAINING.clear()  # one dataset at a time
        _TRAINING[key] = load_dataset(key[0], "train", key[1])
    return _TRAINING[key]


def trial_metrics(result: Any) -> dict[str, Any]:
    """The metric columns of a trial row, with the error counts that proportion intervals need."""
    n = result.examples
    return {
        "err_clean": result.err_clean,
        "err_faulty": result.err_faulty,
        "rerr": result.rerr,
        "accuracy_loss": result.accuracy_loss,
        "flips": result.flips,
        "faulty_macs": result.faulty_macs,
        "examples": n,
        "errors_faulty": round(result.err_faulty * n),
        "errors_robust": round(result.rerr * n),
    }


def build_fault_model(setting: dict[str, Any], data_dir: str | None) -> Any:
    """The :class:`~bitrobust.faults.FaultModel` a :class:`~bitrobust.campaign.plan.FaultSetting`
    describes."""
    from bitrobust.faults import ProfiledSRAM, RandomBitErrors, StuckAtCells
    from bitrobust.hw import PEFaults

    kind, options = setting["kind"], setting["options"]
    if kind == "fault_free":
        return RandomBitErrors(0.0)  # samples nothing: the trial is the fault-free run
    if kind == "random_bit_errors":
        return RandomBitErrors(
            zero_to_one=options["zero_to_one"],
            one_to_zero=options["one_to_zero"],
            layers=options["layers"],
            bits=options["bits"],
            sampler=options["sampler"],
        )
    if kind == "stuck_at_cells":
        return StuckAtCells(
            options["rate"], options["stuck_at_one"], layers=options["layers"], bits=options["bits"]
        )
    if kind == "sram":
        return ProfiledSRAM(chip(options), options["voltage"], placement=options["placement"])
    if kind == "pe_faults":
        return PEFaults(
            options["rate"], options["bit"], options["stuck_at"], options["site"], setting["layer"]
        )
    raise BitrobustError(f"unknown fault type {kind!r}")


def chip(options: dict[str, Any]) -> Any:
    """The SRAM chip of a setting: a chip map file, or a synthetic chip by seed (cached)."""
    from bitrobust.faults import load_chip
    from bitrobust.faults.sram import make_chip

    calibration = options.get("calibration", "failing_cells")
    key = options.get("chip_digest") or f"synthetic{options.get('synthetic_chip')}-{calibration}"
    if key not in _CHIPS:
        if options.get("chip") is not None:
            _CHIPS[key] = load_chip(options["chip"])
        else:
            _CHIPS[key] = make_chip(options["synthetic_chip"], calibration=calibration)
    return _CHIPS[key]


def prepared(task: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The task's deployment, test data and fault-free run, built once per worker."""
    from bitrobust.evaluate import clean_run

    key = repr((task["fingerprint"], task["accelerator"], task["data"]))
    if key in _DEPLOYMENTS:
        _DEPLOYMENTS.move_to_end(key)
        return _DEPLOYMENTS[key]
    deployment = build_deployment(task)
    test = test_data(task)
    data = test.tensors
    entry = (deployment, data, clean_run(deployment, data, task["batch_size"]))
    _DEPLOYMENTS[key] = entry
    while len(_DEPLOYMENTS) > _KEEP_DEPLOYMENTS:
        _DEPLOYMENTS.popitem(last=False)
    return entry


def test_data(task: dict[str, Any]) -> Any:
    from bitrobust.data import load_dataset, subset

    data = task["data"]
    return subset(load_dataset(data["dataset"], "test", task["data_dir"]), data["test_limit"])


def build_deployment(task: dict[str, Any]) -> Any:
    """The checkpoint quantized with its scheme (memory faults), or on the task's emulated
    accelerator (its weights stored as 8-bit operand codes)."""
    from bitrobust.checkpoint import load_checkpoint
    from bitrobust.evaluate import QuantizedDeployment

    checkpoint = load_checkpoint(task["checkpoint"])
    accelerator = task["accelerator"]
    if accelerator is None:
        return QuantizedDeployment(checkpoint.model, checkpoint.scheme)
    from bitrobust.data import evoapprox_dir
    from bitrobust.hw import load_multiplier, make_accelerator
    from bitrobust.hw.deploy import deploy

    calibration = None
    if accelerator["calibration"]:
        calibration = training_data(task).tensors[0][: accelerator["calibration"]]
    multiplier = load_multiplier(accelerator["multiplier"], evoapprox_dir(task["data_dir"]))
    array = make_accelerator(accelerator["array"], accelerator["size"])
    deployment = deploy(checkpoint.model, multiplier, array, calibration, task["batch_size"])
    if accelerator.get("retrain_epochs"):
        deployment = retrained_deployment(task, deployment)
    return deployment


def retrained_deployment(task: dict[str, Any], deployment: Any) -> Any:
    """The deployment after approximation-aware retraining: the weights the retraining stage
    saved (``task["retrained"]``, see :func:`run_retraining`) when that file exists, else
    retrained here (the same deterministic result, one thread)."""
    from bitrobust.hw.deploy import AcceleratorDeployment
    from bitrobust.hw.mitigation import RetrainConfig, retrain

    path = task.get("retrained")
    if path and Path(path).is_file():
        from safetensors.torch import load_file

        deployment.module.load_state_dict(load_file(path))
        return AcceleratorDeployment(deployment.module, deployment.accelerator)
    accelerator = task["accelerator"]
    config = RetrainConfig(
        epochs=accelerator["retrain_epochs"],
        lr=accelerator["retrain_lr"],
        examples=accelerator["retrain_examples"],
    )
    images, labels = training_data(task).tensors
    return retrain(deployment, images, labels, config)


def run_retraining(job: dict[str, Any]) -> dict[str, Any]:
    """The retraining stage: retrain one model for one accelerator's multiplier and save the
    emulated module's weights atomically to ``job["retrained"]``; ``job`` is a trial task
    without trials (checkpoint, fingerprint, accelerator, data, batch_size, data_dir)."""
    from safetensors.torch import save_file

    started = time.perf_counter()
    deployment = build_deployment({**job, "retrained": None})
    state = {
        k: v.detach().cpu().contiguous().clone() for k, v in deployment.module.state_dict().items()
    }
    path = Path(job["retrained"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(state, str(partial))
    os.replace(partial, path)
    return {"retrained": str(path), "seconds": time.perf_counter() - started}


def layout(task: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """The stored parameter names and bits per value of the task's deployment (for per-layer
    and per-bit sweeps)."""
    accelerator = task["accelerator"]
    if accelerator is not None:  # retraining changes no stored name nor width
        accelerator = {k: v for k, v in accelerator.items() if not k.startswith("retrain_")}
    deployment = build_deployment({**task, "accelerator": accelerator})
    tensors = deployment.qmodel.tensors  # no clean run: nothing else is needed
    return tuple(tensors), max(tensor.scheme.bits for tensor in tensors.values())
