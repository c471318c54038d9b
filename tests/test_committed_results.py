"""Committed results re-run to the same numbers: one small cell of a study, from the spec it was
made with, on the CPU with one thread, must equal the value in ``docs/results/`` exactly.

Covered: axdnn2023 (re-run with the campaign code in 0.3). stutz2021 and bnn2021 were made by
the 0.2 runners (bnn2021 on a GPU) and are to be re-run before a cell of theirs can be pinned
here (issue #12).
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
