"""``reproduce bnn2021``: a campaign spec per mode, records per model and training seed, and
correlations with p-values and intervals.

``tests/data/pinned_bnn2021_tiny.json`` holds what the old per-study runner (before the
campaign conversion) computed on tiny settings (Fashion-MNIST, bnn-mlp [32, 32], 2 epochs on
2000 examples, 200 test examples, 2 patterns, one thread): the same settings as a spec must
give the same numbers to the last bit — the training, the accuracy sweep (one pattern at rate
0), the margin and importance metrics and the Spearman ρ of the correlations (records and
correlation rows have gained fields since; the findings are worded anew). A miniature of the
current study (MLP and VGG3, two training seeds) checks the records per seed, the pooled and
per-architecture correlations and the importance resolution; the packaged specs are their
generator's output and fit the time budget."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy
import pytest

from bitrobust import stats
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


def _projected(value, pinned):
    """``value`` restricted to the keys ``pinned`` has (recursively): later versions add keys."""
    if isinstance(pinned, dict):
        return {key: _projected(value[key], pinned[key]) for key in pinned}
    if isinstance(pinned, list) and len(value) == len(pinned):
        return [_projected(v, p) for v, p in zip(value, pinned)]
    return value


def _pinned_records(summary: dict) -> list:
    records = json.loads(json.dumps(summary["records"]))  # as the pinned file holds it
    return _projected(records, PINNED["records"])


CORRELATION_KEY = ("models", "rate", "scope", "metric")
PINNED_CORRELATIONS = {
    tuple(row[k] for k in CORRELATION_KEY): row["spearman"] for row in PINNED["correlations"]
}


def _pinned_correlations(summary: dict) -> dict:
    """Spearman ρ by (models, rate, layers, metric) of the correlations the old runner had."""
    rows = {
        tuple(row[k] for k in CORRELATION_KEY): row["spearman"] for row in summary["correlations"]
    }
    return {key: rows.get(key, "missing") for key in PINNED_CORRELATIONS}


def test_bnn2021_as_a_spec_gives_the_pinned_numbers_and_resumes(
    fmnist, tmp_path, monkeypatch, caplog
):
    assert "bnn2021" in STUDIES
    caplog.set_level(logging.INFO, logger="bitrobust")
    use_spec(monkeypatch, tiny_spec())
    command = "bitrobust reproduce bnn2021 --quick"
    summary = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist, command=command)
    assert _pinned_records(summary) == PINNED["records"]
    assert _pinned_correlations(summary) == PINNED_CORRELATIONS
    sweep = summary["records"][1]["sweep"]
    assert [row["patterns"] for row in sweep] == [1, 2, 2, 2]  # one pattern at rate 0
    for record in summary["records"]:
        assert (record["architecture"], record["training_seed"]) == ("mlp", 0)
        assert record["metrics"]["importance_resolution"] == 1 / 100
    for row in summary["correlations"]:
        assert row["architecture"] == "mlp" and row["points"] in (3, 4)
        assert row["p_value"] is None or 0 < row["p_value"] <= 1

    report = (tmp_path / "bnn2021.md").read_text()
    for text in ("Accuracy under random bit errors", "Metrics per layer", "Correlation", command):
        assert text in report
    assert "campaign.db" in report and "specs/bnn2021-tiny.toml" in report
    assert "1/100" in report  # the importance resolution
    assert (tmp_path / "bnn2021.png").stat().st_size > 1000
    assert (tmp_path / "bnn2021_metrics_mlp.png").stat().st_size > 1000
    record = json.loads((tmp_path / "bnn2021.json").read_text())
    assert record["records"] == json.loads(json.dumps(summary["records"]))
    assert {row["rate"] for row in record["correlations"]} == {0.1, 0.2}

    # A rerun does no new work: trials from the store, metrics from their cache.
    caplog.clear()
    again = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist)
    assert "training" not in caplog.text and "trial(s) to run" not in caplog.text
    assert "metrics of" not in caplog.text
    assert _pinned_records(again) == PINNED["records"]

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
    settings = bnn2021.study_settings(quick)
    assert (spec.name, text[0]) == ("bnn2021-quick" if quick else "bnn2021", "#")
    assert (spec, text) == packaged_spec(spec.name)
    assert text == bnn2021.spec_text(settings)  # the file is its generator's output
    assert spec.data.dataset == "fashion-mnist" and len(spec.models) == 12
    for architecture, slug in (("bnn-mlp", "mlp"), ("vgg3", "vgg3")):
        models = [m for m in spec.models if m.architecture == architecture]
        bfit = [m for m in models if m.loss == "cross_entropy"]
        assert [bnn2021.variant_spec(m)["bit_error_rate"] for m in bfit] == [0.0, 0.05, 0.1, 0.2]
        assert [m.method for m in bfit] == ["normal", "bitflip", "bitflip", "bitflip"]
        assert [m.hinge_b for m in models if m.loss == "hinge"] == [32.0, 128.0]
        names = [m.name for m in models]
        assert f"fashion-mnist-bnn-{slug}-bfit-0-pct" in names
        assert f"fashion-mnist-bnn-{slug}-bfit-20-pct" in names
        assert f"fashion-mnist-bnn-{slug}-mhl-b-128" in names
    for model in spec.models:
        assert (model.quantization, model.optimizer, model.training_seeds) == (
            "binary",
            "adam",
            [0, 1, 2],
        )
        assert (model.lr, model.batch_size, model.weight_decay) == (1e-3, 256, 0.0)
    (fault,) = spec.faults
    assert fault.name == "bit-errors" and 0.0 in fault.rates and max(fault.rates) == 0.3
    rates = bnn2021.metric_settings(quick).correlation_rates
    assert set(rates) <= set(fault.rates)


def test_the_budget_estimates_fit():
    """Full: at most ~110 min on 2 workers; quick: under 15 (the header states them)."""
    full = bnn2021.cost_estimate(bnn2021.study_settings(False))
    quick = bnn2021.cost_estimate(bnn2021.study_settings(True))
    assert full["wall"] <= 110 * 60 and quick["wall"] < 15 * 60
    assert f"{full['wall'] / 60:.0f} min wall" in bnn2021.study_spec(False)[1]
    metrics = bnn2021.metric_settings(False)
    assert metrics.examples_for("mlp") == 10000 and metrics.importance_neurons is None


def tiny_settings() -> bnn2021.StudySettings:
    """MLP and VGG3, BFIT 0/20 % and MHL, 2 training seeds, tiny data: about 20 s."""
    tiny = bnn2021.UnitCosts(0.0, 0.0, 0.0)
    return bnn2021.StudySettings(
        name="bnn2021-tiny2",
        mode="tiny",
        networks=(
            bnn2021.Network("mlp", "bnn-mlp", "MLP", "{ hidden = [16, 16] }", 1, tiny),
            bnn2021.Network("vgg3", "vgg3", "VGG3", "{ channels = 4, hidden = 16 }", 1, tiny),
        ),
        metrics=bnn2021.MetricSettings(
            examples=200,
            architecture_examples=(("vgg3", 100),),
            resamples=300,
            permutations=300,
        ),
        variants=tuple(bnn2021.VARIANTS[i] for i in (0, 3, 5)),
        training_seeds=(0, 1),
        train_limit=600,
        test_limit=200,
        rates=(0.0, 0.1, 0.2),
        patterns=1,
    )


def test_two_architectures_and_seeds_give_records_per_seed_and_tested_correlations(
    fmnist, tmp_path, monkeypatch
):
    settings = tiny_settings()
    text = bnn2021.spec_text(settings)
    use_spec(monkeypatch, text)
    monkeypatch.setattr(bnn2021, "metric_settings", lambda quick: settings.metrics)
    summary = bnn2021.reproduce(tmp_path, quick=True, data_dir=fmnist)

    records = summary["records"]
    assert len(records) == 2 * 3 * 2  # architectures × variants × training seeds
    assert [(r["architecture"], r["training_seed"]) for r in records[:2]] == [
        ("mlp", 0),
        ("mlp", 1),
    ]
    assert records[-1]["name"] == "fashion-mnist-bnn-vgg3-mhl-b-128"
    for record in records:
        examples = 200 if record["architecture"] == "mlp" else 100
        assert record["metrics"]["examples"] == examples
        assert record["metrics"]["importance_resolution"] == 1 / examples
        assert [row["bit_error_rate"] for row in record["sweep"]] == [0.0, 0.1, 0.2]
    seeds = {r["training_seed"]: r for r in records if r["name"].endswith("mlp-bfit-20-pct")}
    assert seeds[0]["checkpoint"] != seeds[1]["checkpoint"]

    rows = summary["correlations"]
    assert {row["architecture"] for row in rows} == {"all", "mlp", "vgg3"}
    pooled = [r for r in rows if r["architecture"] == "all" and r["models"] == "all (12)"]
    assert {r["metric"] for r in pooled} == set(bnn2021.CORRELATED_METRICS)
    assert {r["points"] for r in pooled} == {12}
    for row in rows:
        assert row["expected_sign"] in (1, -1) and "label" in row
        if row["spearman"] is None:
            continue
        assert 0 < row["p_value"] <= 1
        assert row["observed_sign"] == (1 if row["spearman"] > 0 else -1 if row["spearman"] else 0)
        if row["ci_low"] is not None:
            assert -1 <= row["ci_low"] <= row["ci_high"] <= 1
    importance = next(r for r in pooled if r["metric"] == "importance_loss_variance")
    assert importance["importance_resolution"] == [1 / 200, 1 / 100]
    per_layer = {r["scope"] for r in rows if r["architecture"] == "vgg3"}
    assert len(per_layer) == 1 + 3  # the mean and VGG3's three blocks

    report = (tmp_path / "bnn2021.md").read_text()
    assert "1/100" in report and "1/200" in report and "p = " in report
    findings = "\n".join(summary["findings"])
    assert "- Sign of INM: importance variance (loss rise) (expected −): all @ 10 % " in findings
    assert "vgg3: importance measured on 100 test examples: resolution 1/100" in findings
    for name in ("bnn2021.png", "bnn2021_metrics_mlp.png", "bnn2021_metrics_vgg3.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_spearman_bootstrap_interval():
    x = list(range(20))
    y = [v + (3 if v % 2 else -3) for v in x]  # monotone up to noise
    low, high = stats.spearman_bootstrap_interval(x, y, seed=1, resamples=2000)
    rho = stats.spearman(x, y)
    assert 0 < low <= rho <= high <= 1
    assert stats.spearman_bootstrap_interval(x, y, seed=1, resamples=2000) == (low, high)
    assert stats.spearman_bootstrap_interval([1, 1, 1], [1, 2, 3]) is None
    assert stats.spearman_bootstrap_interval([1, 2], [1, 2]) is None
    rows = stats._row_spearman(
        numpy.array([[1.0, 2, 2, 3], [4, 3, 2, 1]]), numpy.array([[1.0, 3, 2, 4], [1, 2, 3, 4]])
    )
    assert rows.tolist() == pytest.approx([stats.spearman([1, 2, 2, 3], [1, 3, 2, 4]), -1.0])
