"""Committed results re-run to the same numbers: one small cell of a study, from the spec it was
made with, on the CPU with one thread, must equal the value in ``docs/results/`` exactly.

Covered: axdnn2023 (its committed run, from a frozen copy of that spec), stutz2021 (MNIST and
Fashion-MNIST, three seeds) and, in tests/test_stutz2021_cifar10.py, stutz2021-cifar10. bnn2021's
committed figures come from an earlier spec and are to be re-run before a cell is pinned.
"""

from __future__ import annotations

import json
from pathlib import Path

from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.spec import parse_spec
from bitrobust.campaign.store import CampaignStore

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
#: The axdnn2023 spec of the committed run, frozen: the packaged spec has since grown (signed
#: multipliers, GPU-like array, retraining, three training seeds), and the committed results
#: are to be re-run from it.
AXDNN2023_COMMITTED_SPEC = Path(__file__).parent / "data" / "axdnn2023-committed.toml"


def test_axdnn2023_one_cell_reruns_to_the_committed_value(tmp_path, data_dir):
    """The MNIST MLP (6 epochs on all of MNIST, ~20 s) fault free on mul8u_L40."""
    committed = json.loads((RESULTS / "axdnn2023" / "axdnn2023.json").read_text())
    text = AXDNN2023_COMMITTED_SPEC.read_text()
    assert committed["spec"] == text  # the committed run is this spec's
    spec = parse_spec(text)
    model = next(m for m in spec.models if m.name == "mnist-mlp")
    fault = next(f for f in spec.faults if f.name == "fault-free-mul8u_L40")
    cell = spec.model_copy(update={"models": [model], "faults": [fault]})
    run_campaign(cell, text, tmp_path / "cell.db", data_dir=data_dir)
    with CampaignStore.open_existing(tmp_path / "cell.db") as store:
        (record,) = store.records()
    (row,) = [r for r in committed["records"] if (r["dataset"], r["model"]) == ("mnist", "mlp")]
    expected = next(m["accuracy"] for m in row["multipliers"] if m["multiplier"] == "mul8u_L40")
    assert 1 - record.metrics["err_faulty"] == expected


def test_stutz2021_one_cell_reruns_to_the_committed_value(tmp_path, data_dir, monkeypatch):
    """MNIST RQuant 8 bit, training seed 0 (trained here, ~15 s), p = 1 %, pattern 0."""
    import bitrobust
    from bitrobust.experiments.campaigns import packaged_spec
    from bitrobust.experiments.claims import load_trials

    row = next(
        r
        for r in load_trials(RESULTS / "stutz2021" / "trials.csv.gz")
        if (r["model"], r["training_seed"], r["fault"], r["x"], r["pattern"])
        == ("mnist-8bit-rquant", 0, "bit-errors", 0.01, 0)
    )
    monkeypatch.setattr(bitrobust, "__version__", row["package_version"])  # in the fingerprint
    spec, text = packaged_spec("stutz2021")
    model = next(m for m in spec.models if m.name == "mnist-8bit-rquant")
    fault = next(f for f in spec.faults if f.name == "bit-errors")
    cell = spec.model_copy(
        update={
            "models": [model.model_copy(update={"training_seeds": [0]})],
            "faults": [fault.model_copy(update={"rates": [0.01]})],
            "patterns": 1,
        }
    )
    run_campaign(cell, text, tmp_path / "cell.db", data_dir=data_dir)
    with CampaignStore.open_existing(tmp_path / "cell.db") as store:
        (record,) = store.records()
    assert record.metrics["rerr"] == row["rerr"]
    assert record.metrics["errors_robust"] == row["errors_robust"]
