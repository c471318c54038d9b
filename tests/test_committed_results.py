"""Committed results re-run to the same numbers: one small cell of a study, from the spec it was
made with, on the CPU with one thread, must equal the value in ``docs/results/`` exactly.

Covered: axdnn2023, bnn2021 and stutz2021 (MNIST and Fashion-MNIST) here, stutz2021-cifar10 in
tests/test_stutz2021_cifar10.py (from a committed checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.store import CampaignStore

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _cell(study: str, model_name: str, training_seed: int, fault_name: str, **values):
    """The packaged spec of ``study`` cut to one model, training seed, fault entry (its swept
    values replaced by ``values``) and pattern, with the spec text the results were made from."""
    from bitrobust.experiments.campaigns import packaged_spec

    spec, text = packaged_spec(study)
    model = next(m for m in spec.models if m.name == model_name)
    fault = next(f for f in spec.faults if f.name == fault_name)
    cell = spec.model_copy(
        update={
            "models": [model.model_copy(update={"training_seeds": [training_seed]})],
            "faults": [fault.model_copy(update=values)],
            "patterns": 1,
        }
    )
    return cell, text


def _committed_row(study: str, **where) -> dict:
    from bitrobust.experiments.claims import load_trials

    rows = load_trials(RESULTS / study / "trials.csv.gz")
    return next(r for r in rows if all(r[key] == value for key, value in where.items()))


def _rerun(cell, text, tmp_path, data_dir):
    run_campaign(cell, text, tmp_path / "cell.db", data_dir=data_dir)
    with CampaignStore.open_existing(tmp_path / "cell.db") as store:
        (record,) = store.records()
    return record.metrics


def test_axdnn2023_one_cell_reruns_to_the_committed_value(tmp_path, data_dir, monkeypatch):
    """The MNIST MLP, training seed 0 (trained here, ~10 s), retrained for mul8u_NGR (~2 s),
    10 % of the TPU-like array's PEs with product bit 12 stuck at 1, fault map 0."""
    import bitrobust

    row = _committed_row(
        "axdnn2023", model="mnist-mlp", training_seed=0, fault="bits-mul8u_NGR-tpu-sa1", x=0.1,
        bit=12, pattern=0,
    )  # fmt: skip
    monkeypatch.setattr(bitrobust, "__version__", row["package_version"])  # in the fingerprint
    cell, text = _cell(
        "axdnn2023", "mnist-mlp", 0, "bits-mul8u_NGR-tpu-sa1", fault_rates=[0.1], bit=[12]
    )
    metrics = _rerun(cell, text, tmp_path, data_dir)
    assert 0.5 < row["err_faulty"] < 0.9  # a cell the fault changes, not a saturated one
    for name in ("err_faulty", "errors_robust", "faulty_macs"):
        assert metrics[name] == row[name], name


def test_stutz2021_one_cell_reruns_to_the_committed_value(tmp_path, data_dir, monkeypatch):
    """MNIST RQuant 8 bit, training seed 0 (trained here, ~15 s), p = 1 %, pattern 0."""
    import bitrobust

    row = _committed_row(
        "stutz2021", model="mnist-8bit-rquant", training_seed=0, fault="bit-errors", x=0.01,
        pattern=0,
    )  # fmt: skip
    monkeypatch.setattr(bitrobust, "__version__", row["package_version"])  # in the fingerprint
    cell, text = _cell("stutz2021", "mnist-8bit-rquant", 0, "bit-errors", rates=[0.01])
    metrics = _rerun(cell, text, tmp_path, data_dir)
    assert metrics["rerr"] == row["rerr"]
    assert metrics["errors_robust"] == row["errors_robust"]


def test_bnn2021_one_cell_reruns_to_the_committed_value(tmp_path, data_dir, monkeypatch):
    """The binarized MLP with plain training (BFIT 0 %), training seed 0: the study's cheapest
    model, trained here (about 1.5 min on one thread), then p = 10 %, pattern 0."""
    import bitrobust

    name = "fashion-mnist-bnn-mlp-bfit-0-pct"
    row = _committed_row(
        "bnn2021", model=name, training_seed=0, fault="bit-errors", x=0.1, pattern=0
    )
    monkeypatch.setattr(bitrobust, "__version__", row["package_version"])  # in the fingerprint
    cell, text = _cell("bnn2021", name, 0, "bit-errors", rates=[0.1])
    metrics = _rerun(cell, text, tmp_path, data_dir)
    assert metrics["err_faulty"] == row["err_faulty"]
    assert metrics["errors_robust"] == row["errors_robust"]
