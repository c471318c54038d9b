"""The CIFAR-10 Stutz study: its spec is its generator, and its committed numbers re-run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("quick", [False, True])
def test_the_cifar10_spec_is_its_generator(quick):
    from bitrobust.experiments.campaigns import SPECS, packaged_spec
    from bitrobust.experiments.stutz2021_cifar10 import spec_text

    name = "stutz2021-cifar10" + ("-quick" if quick else "")
    assert (SPECS / f"{name}.toml").read_text() == spec_text(quick)
    spec, _ = packaged_spec(name)
    assert len(spec.models) == 7 and all(
        len(m.training_seeds) == (2 if quick else 3) for m in spec.models
    )


CHECKPOINT = Path(__file__).parent / "data" / "stutz2021-cifar10-rquant-seed0.safetensors"
TRIALS = (
    Path(__file__).resolve().parents[1] / "docs" / "results" / "stutz2021-cifar10" / "trials.csv.gz"
)


def test_one_committed_cell_reruns_to_the_committed_value(tmp_path, data_dir, monkeypatch):
    """RQuant, training seed 0, p = 1 %, pattern 0, first 1000 CIFAR-10 test images: from the
    committed checkpoint of that model (training it takes minutes), which must be the spec's
    recipe (its fingerprint), re-evaluated on the CPU with one thread."""
    import bitrobust
    from bitrobust.campaign.plan import training_jobs
    from bitrobust.campaign.runner import run_campaign
    from bitrobust.campaign.spec import parse_spec
    from bitrobust.campaign.store import CampaignStore
    from bitrobust.checkpoint import load_checkpoint
    from bitrobust.experiments.campaigns import packaged_spec
    from bitrobust.experiments.claims import load_trials

    if not (data_dir / "cifar10").is_dir():
        pytest.skip("CIFAR-10 not in the data folder")
    row = next(
        r
        for r in load_trials(TRIALS)
        if (r["model"], r["training_seed"], r["fault"], r["x"], r["pattern"])
        == ("cifar10-8bit-rquant", 0, "bit-errors", 0.01, 0)
    )
    monkeypatch.setattr(bitrobust, "__version__", row["package_version"])  # in the fingerprint
    spec, _ = packaged_spec("stutz2021-cifar10")
    job = next(
        j
        for j in training_jobs(spec, tmp_path)
        if (j.model, j.training_seed) == ("cifar10-8bit-rquant", 0)
    )
    assert load_checkpoint(CHECKPOINT).training["fingerprint"] == job.fingerprint
    text = f"""
name = "cell"
seed = {spec.seed}
patterns = 1
metrics = ["rerr"]

[data]
dataset = "cifar10"
test_limit = {spec.data.test_limit}
batch_size = {spec.data.batch_size}

[[models]]
name = "rquant-seed0"
checkpoint = "{CHECKPOINT}"

[[faults]]
name = "bit-errors"
type = "random_bit_errors"
rates = [0.01]
"""
    run_campaign(parse_spec(text), text, tmp_path / "cell.db", data_dir=data_dir)
    with CampaignStore.open_existing(tmp_path / "cell.db") as store:
        (record,) = store.records()
    assert record.metrics["rerr"] == row["rerr"]
    assert record.metrics["errors_robust"] == row["errors_robust"]
