"""``reproduce bnn2021`` runs as a campaign spec and reproduces the numbers of the runner it
replaced.

``tests/data/pinned_bnn2021_tiny.json`` holds what the old per-study runner (before the
campaign conversion) computed on tiny settings (Fashion-MNIST, bnn-mlp [32, 32], 2 epochs on
2000 examples, 200 test examples, 2 patterns, one thread): the same settings as a spec must
give the same numbers to the last bit — the training, the accuracy sweep (one pattern at rate
0), the margin and importance metrics, the correlations and the findings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bitrobust.campaign.spec import parse_spec
from bitrobust.experiments import STUDIES, bnn2021
from bitrobust.experiments.campaigns import packaged_spec

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_bnn2021_tiny.json").read_text())

TINY_METRICS = bnn2021.MetricSettings(examples=100, importance_neurons=4)


def tiny_spec(patterns: int = 2) -> str:
    """The pinned settings as a campaign spec: BFIT 0/10/20 % and MHL b=8."""
    text = (
        f'name = "bnn2021-tiny"\nseed = 0\npatterns = {patterns}\n\n[data]\n'
        'dataset = "fashion-mnist"\ntest_limit = 200\ntrain_limit = 2000\n'
    )
    variants = [
        ("bfit-0-pct", "BFIT 0 %", 'method = "normal"\nbit_error_rate = 0.0'),
        ("bfit-10-pct", "BFIT 10 %", 'method = "bitflip"\nbit_error_rate = 0.1'),
        ("bfit-20-pct", "BFIT 20 %", 'method = "bitflip"\nbit_error_rate = 0.2'),
        ("mhl-b-8", "MHL b=8", 'method = "normal"\nloss = "hinge"\nhinge_b = 8.0'),
    ]
    for slug, label, training in variants:
        text += (
            f'\n[[models]]\nname = "fashion-mnist-bnn-mlp-{slug}"\nlabel = "{label}"\n'
            'architecture = "bnn-mlp"\noptions = { hidden = [32, 32] }\nquantization = "binary"\n'
            f'{training}\nepochs = 2\nbatch_size = 256\nlr = 0.001\noptimizer = "adam"\n'
            "weight_decay = 0.0\n"
        )
    text += (
        '\n[[faults]]\nname = "bit-errors"\ntype = "random_bit_errors"\n'
        "rates = [0.0, 0.05, 0.1, 0.2]\nsampler = 1\n"
    )
    return text


@pytest.fixture
def fmnist(monkeypatch) -> Path:
    path = Path(os.environ.get("BITROBUST_DATA_DIR", ""))
    if not (path / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not found under {path}")
    monkeypatch.setattr(bnn2021, "metric_settings", lambda quick: TINY_METRICS)
    return path


def use_spec(monkeypatch, text: str) -> None:
    monkeypatch.setattr(bnn2021, "study_spec", lambda quick: (parse_spec(text), text))


def _pinned_view(summary: dict) -> dict:
    keys = ("name", "variant", "accuracy", "sweep", "metrics")
    view = {
        "records": [{k: r[k] for k in keys} for r in summary["records"]],
        "correlations": summary["correlations"],
        "findings": summary["findings"],
    }
    return json.loads(json.dumps(view))  # as the pinned file holds it (tuples → lists)


def test_bnn2021_as_a_spec_gives_the_pinned_numbers_and_resumes(
    fmnist, tmp_path, monkeypatch, caplog
):
    assert "bnn2021" in STUDIES
    caplog.set_level(logging.INFO, logger="bitrobust")
    use_spec(monkeypatch, tiny_spec())
    command = "bitrobust reproduce bnn2021 --quick"
    summary = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist, command=command)
    pinned = {k: PINNED[k] for k in ("records", "correlations", "findings")}
    assert _pinned_view(summary) == pinned
    sweep = summary["records"][1]["sweep"]
    assert [row["patterns"] for row in sweep] == [1, 2, 2, 2]  # one pattern at rate 0

    report = (tmp_path / "bnn2021.md").read_text()
    for text in ("Accuracy under random bit errors", "Metrics per layer", "Correlation", command):
        assert text in report
    assert "campaign.db" in report and "specs/bnn2021-tiny.toml" in report
    assert (tmp_path / "bnn2021.png").stat().st_size > 1000
    assert (tmp_path / "bnn2021_metrics.png").stat().st_size > 1000
    record = json.loads((tmp_path / "bnn2021.json").read_text())
    assert record["records"] == json.loads(json.dumps(summary["records"]))
    assert {row["rate"] for row in record["correlations"]} == {0.1, 0.2}

    # A rerun does no new work (the metrics are recomputed, to the same numbers).
    caplog.clear()
    again = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist)
    assert "training" not in caplog.text and "trial(s) to run" not in caplog.text
    assert _pinned_view(again) == pinned

    # The old runner's stale-cache bug: more patterns in the spec give more patterns.
    caplog.clear()
    use_spec(monkeypatch, tiny_spec(patterns=3))
    grown = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist)
    assert "training" not in caplog.text and "trial(s) to run" in caplog.text
    for r in grown["records"]:
        assert [row["patterns"] for row in r["sweep"]] == [1, 3, 3, 3]
    assert grown["records"][0]["sweep"][0] == summary["records"][0]["sweep"][0]
    assert grown["records"][0]["sweep"][1] != summary["records"][0]["sweep"][1]


@pytest.mark.parametrize("quick", [True, False])
def test_the_packaged_bnn2021_specs(quick):
    spec, text = bnn2021.study_spec(quick)
    assert (spec.name, text[0]) == ("bnn2021-quick" if quick else "bnn2021", "#")
    assert (spec, text) == packaged_spec(spec.name)
    assert spec.data.dataset == "fashion-mnist"
    bfit = [m for m in spec.models if (m.loss or "cross_entropy") == "cross_entropy"]
    assert [bnn2021.variant_spec(m)["bit_error_rate"] for m in bfit] == [0.0, 0.05, 0.1, 0.2]
    assert [m.method for m in bfit] == ["normal", "bitflip", "bitflip", "bitflip"]
    hinge = [m.hinge_b for m in spec.models if m.loss == "hinge"]
    assert hinge == ([128.0] if quick else [32.0, 128.0])
    for model in spec.models:
        assert (model.architecture, model.quantization, model.optimizer) == (
            "bnn-mlp",
            "binary",
            "adam",
        )
        assert (model.lr, model.batch_size, model.weight_decay) == (1e-3, 256, 0.0)
    (fault,) = spec.faults
    assert fault.sampler == 1 and 0.0 in fault.rates and max(fault.rates) == 0.3
    rates = bnn2021.metric_settings(quick).correlation_rates
    assert set(rates) <= set(fault.rates)
