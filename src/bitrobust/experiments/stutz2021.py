"""``bitrobust reproduce stutz2021``: Normal vs RQuant vs Clipping vs RandBET (Stutz et al. 2021).

Trains the paper's model variants at 8 and 4 bit on MNIST and Fashion-MNIST with three training
seeds (retraining noise is as large as the differences between Clipping and RandBET), plus the
poster's ablations: the quantization ladder, label smoothing against clipping, and RandBET on
one fixed bit error pattern, evaluated on that pattern and on random ones. It sweeps random bit
error rates, runs the models on synthetic low-voltage SRAM chips, and writes ``stutz2021.md``
(tables, the ordering check against the paper's claim, the fixed-pattern table, energy),
``stutz2021.png`` and ``stutz2021.json``.

The spec is code: :func:`spec_text` writes :data:`FULL` or :data:`QUICK` as
``specs/stutz2021.toml`` / ``specs/stutz2021-quick.toml`` (a test keeps them equal), with the
cost estimate of :func:`estimate` in its header.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import statistics
import textwrap
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bitrobust.campaign.spec import CampaignSpec, RandomBitErrorsSpec, SRAMSpec, parse_spec
from bitrobust.energy import EnergyModel, chip_rates, find_operating_point
from bitrobust.experiments.campaigns import packaged_spec, provenance_line, run_study_spec
from bitrobust.experiments.robustness import model_records, plot_study, results_table
from bitrobust.experiments.sram_energy import energy_savings, savings_table, voltage_table
from bitrobust.faults import make_chip
from bitrobust.provenance import provenance
from bitrobust.report import markdown_table

STUDY = "stutz2021"

#: The random bit error rates: the paper's MNIST grid (papers.md §1.4), 0.1 % to 20 %.
RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
#: SRAM voltages relative to V_min, down to 0.76 where the paper's p(V) reaches about 20 %.
VOLTAGES = tuple(round(0.76 + 0.02 * k, 2) for k in range(13))

#: The fixed-pattern ablation (poster "Training on fixed bit errors"): RandBET trains on the one
#: pattern of this seed at this rate, and the ``training-pattern`` entry evaluates on it.
FIXED_PATTERN_SEED = 1000
FIXED_PATTERN_RATE = 0.025
TRAINING_PATTERN = "training-pattern"
RANDOM_PATTERNS = "random-patterns"


@dataclass(frozen=True)
class Variant:
    """A model recipe of the study, named ``<dataset>-<bits>bit-<key>``; unset keys are left out
    of the spec."""

    key: str
    label: str
    quantization: str = "rquant"
    method: str = "normal"
    w_max: float | None = None
    bit_error_rate: float | None = None
    label_smoothing: float | None = None
    fixed_pattern_seed: int | None = None

    def recipe_lines(self) -> list[str]:
        """Its quantization, method and the optional keys it sets, as spec lines."""
        optional = {
            "w_max": self.w_max,
            "bit_error_rate": self.bit_error_rate,
            "label_smoothing": self.label_smoothing,
            "fixed_pattern_seed": self.fixed_pattern_seed,
        }
        return [
            f'quantization = "{self.quantization}"',
            f'method = "{self.method}"',
            *(f"{key} = {value}" for key, value in optional.items() if value is not None),
        ]


NORMAL = Variant("normal", "Normal", quantization="normal")
PERLAYER = Variant("perlayer-normal", "Normal (per-layer)", quantization="perlayer")
PERLAYER_ASYM = Variant("perlayer-asym", "Per-layer +asym", quantization="perlayer-asym")
PERLAYER_ASYM_UNSIGNED = Variant(
    "perlayer-asym-unsigned", "Per-layer +asym +unsigned", quantization="perlayer-asym-unsigned"
)
RQUANT = Variant("rquant", "RQuant")
CLIPPING_01 = Variant("clipping-01", "Clipping 0.1", method="clipping", w_max=0.1)
CLIPPING_005 = Variant("clipping-005", "Clipping 0.05", method="clipping", w_max=0.05)
CLIPPING_01_LS = Variant(
    "clipping-01-ls", "Clipping 0.1 + LS", method="clipping", w_max=0.1, label_smoothing=0.1
)
RANDBET_01 = Variant("randbet-01", "RandBET 0.1", method="randbet", w_max=0.1, bit_error_rate=0.01)
RANDBET_005 = Variant(
    "randbet-005", "RandBET 0.05", method="randbet", w_max=0.05, bit_error_rate=0.01
)
RANDBET_FIXED_01 = Variant(
    "randbet-fixed-01",
    "RandBET fixed pattern",
    method="randbet",
    w_max=0.1,
    bit_error_rate=FIXED_PATTERN_RATE,
    fixed_pattern_seed=FIXED_PATTERN_SEED,
)

#: 8 bit: the main comparison, the quantization ladder (per-layer → +asym → +unsigned →
#: +rounding = RQuant), label smoothing and the fixed pattern.
EIGHT_BIT = (
    NORMAL,
    PERLAYER,
    PERLAYER_ASYM,
    PERLAYER_ASYM_UNSIGNED,
    RQUANT,
    CLIPPING_01,
    CLIPPING_005,
    CLIPPING_01_LS,
    RANDBET_01,
    RANDBET_005,
    RANDBET_FIXED_01,
)
#: 4 bit: no global Normal (range ±1 with truncation leaves its weights −0.143 or 0).
FOUR_BIT = (PERLAYER, RQUANT, CLIPPING_005, RANDBET_005)
#: The models evaluated on the fixed pattern: the one trained on it and its two comparisons.
ON_TRAINING_PATTERN = (RANDBET_FIXED_01, RANDBET_01, CLIPPING_01)


@dataclass(frozen=True)
class StudySettings:
    """What one mode of the study trains and evaluates."""

    name: str
    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 6
    train_limit: int = 30000
    test_limit: int = 5000
    training_seeds: tuple[int, ...] = (0, 1, 2)
    patterns: int = 25
    rates: tuple[float, ...] = RATES
    chips: int = 4
    voltages: tuple[float, ...] = VOLTAGES
    variants: tuple[tuple[int, tuple[Variant, ...]], ...] = ((8, EIGHT_BIT), (4, FOUR_BIT))


FULL = StudySettings(STUDY)
QUICK = StudySettings(
    f"{STUDY}-quick",
    epochs=4,
    train_limit=10000,
    test_limit=2000,
    training_seeds=(0, 1),
    patterns=5,
    chips=2,
    voltages=VOLTAGES[::2],
)

#: Unit costs of :func:`estimate` (CPU seconds, 1 thread, MLP [256, 256]), measured on the
#: 2-core development machine while a long run kept both cores busy, so they overestimate; the
#: largest of two or three measurements. One epoch on 5000 MNIST examples: normal 1.31-2.14 s
#: (clipping and label smoothing cost the same), RandBET 2.64-3.63 s. One trial on 5000 test
#: images: random bit errors 0.048-0.080 s, of which the pass over the images 0.031-0.046 s
#: (the rest samples the pattern); one SRAM voltage 0.119 s.
EPOCH_SECONDS_PER_EXAMPLE = {"normal": 2.14 / 5000, "clipping": 2.14 / 5000, "randbet": 3.63 / 5000}
TRIAL_FIXED_SECONDS = {"random_bit_errors": 0.080 - 0.046, "sram": 0.119 - 0.031}
PASS_SECONDS_PER_IMAGE = 0.046 / 5000
FULL_TRAIN_SET = 60000  # MNIST and Fashion-MNIST


class Estimate(NamedTuple):
    """A spec's work and its CPU minutes from the unit costs above."""

    trainings: int
    trials: int
    training_minutes: float
    trial_minutes: float

    def wall_minutes(self, workers: int = 2) -> float:
        return (self.training_minutes + self.trial_minutes) / workers


def estimate(spec: CampaignSpec) -> Estimate:
    """The training jobs and trials of ``spec`` and their CPU minutes (the unit costs scale with
    the examples trained on and the test images of a trial)."""
    examples = spec.data.train_limit or FULL_TRAIN_SET
    trainings = trials = 0
    training_s = trial_s = 0.0
    for model in spec.models:
        seeds = len(model.training_seeds)
        trainings += seeds
        training_s += seeds * model.epochs * examples * EPOCH_SECONDS_PER_EXAMPLE[model.method]
        for fault in spec.fault_models_for(model.name):
            values = len(fault.voltages if isinstance(fault, SRAMSpec) else fault.rates)
            count = seeds * values * (fault.patterns or spec.patterns)
            per_trial = TRIAL_FIXED_SECONDS[fault.type]
            trials += count
            trial_s += count * (per_trial + spec.data.test_limit * PASS_SECONDS_PER_IMAGE)
    return Estimate(trainings, trials, training_s / 60, trial_s / 60)


def settings(quick: bool) -> StudySettings:
    return QUICK if quick else FULL


def spec_text(quick: bool) -> str:
    """The packaged spec of the quick or full mode (``specs/stutz2021[-quick].toml``)."""
    return render_spec(settings(quick), quick)


def render_spec(s: StudySettings, quick: bool = False) -> str:
    """The campaign spec of settings ``s``: a header with the cost estimate, then the body."""
    body = _spec_body(s)
    return "\n".join(_header(s, quick, estimate(parse_spec(body)))) + "\n" + body


def _header(s: StudySettings, quick: bool, cost: Estimate) -> list[str]:
    """The spec's comment: what it trains and evaluates, and what it costs."""
    rate = f"{100 * FIXED_PATTERN_RATE:g} %"
    normal = EPOCH_SECONDS_PER_EXAMPLE["normal"] * 5000
    randbet = EPOCH_SECONDS_PER_EXAMPLE["randbet"] * 5000
    trial = TRIAL_FIXED_SECONDS["random_bit_errors"] + 5000 * PASS_SECONDS_PER_IMAGE
    sram = TRIAL_FIXED_SECONDS["sram"] + 5000 * PASS_SECONDS_PER_IMAGE
    return [
        *_comment(
            f"Stutz et al. 2021 ({'quick' if quick else 'full'} mode), made by "
            "bitrobust.experiments.stutz2021.spec_text (a test keeps this file equal to it: "
            "change the generator, then regenerate); `bitrobust reproduce "
            f"stutz2021{' --quick' if quick else ''}` runs it. MLP {list(s.hidden)} on "
            f"{' and '.join(s.datasets)}, {s.epochs} epochs on the first {s.train_limit} "
            f"training examples, training seeds {', '.join(map(str, s.training_seeds))} for "
            "every model:"
        ),
        *_comment(
            "8 bit: Normal (global range ±1), Normal (per-layer), RQuant, Clipping 0.1/0.05, "
            "RandBET 0.1/0.05 (p = 1 %): the paper's ordering Normal ≥ RQuant ≥ Clipping ≥ "
            "RandBET;",
            bullet=True,
        ),
        *_comment(
            "the poster's quantization ablation, all normally trained: per-layer "
            "(perlayer-normal), +asymmetric, +unsigned, +rounding (= RQuant);",
            bullet=True,
        ),
        *_comment("label smoothing against clipping: Clipping 0.1 + LS 0.1;", bullet=True),
        *_comment(
            "fixed-pattern training: RandBET at w_max 0.1 on the one pattern of seed "
            f"{FIXED_PATTERN_SEED} at p = {rate} (sampler 2), evaluated with RandBET 0.1 and "
            f"Clipping 0.1 on that pattern (entry {TRAINING_PATTERN}; its 1 % pattern is a "
            "subset of it) and on random patterns at the same rates (bit-errors at 1 %, "
            f"{RANDOM_PATTERNS} at {rate});",
            bullet=True,
        ),
        *_comment(
            "4 bit: Normal (per-layer), RQuant, Clipping 0.05, RandBET 0.05. Global Normal is "
            "left out at 4 bit: with range ±1 and truncation its weights can only be -0.143 or "
            "0, so it does not train.",
            bullet=True,
        ),
        *_comment(
            "RErr under random bit errors (sampler 2: a seed's patterns are nested across "
            f"rates), and on {s.chips} synthetic SRAM chips calibrated to the paper's p(V) (the "
            "rate of flipped bits) for the energy part."
        ),
        *_comment(
            f"Cost: {cost.trainings} trainings (about {cost.training_minutes:.0f} CPU-min) and "
            f"{cost.trials} trials (about {cost.trial_minutes:.0f} CPU-min): about "
            f"{cost.wall_minutes(2):.0f} min wall with --workers 2. From unit costs measured "
            "with 1 thread on a 2-core machine that another run kept busy, so an overestimate: "
            f"an epoch of the MLP on 5000 examples {normal:.1f} s (RandBET {randbet:.1f} s), a "
            f"trial on 5000 test images {trial:.2f} s (SRAM: {sram:.2f} s); see "
            "bitrobust.experiments.stutz2021.estimate."
        ),
    ]


def _toml_list(key: str, names: list[str]) -> list[str]:
    """``key = [...]``, one string per line."""
    return [f"{key} = [", *(f"    {json.dumps(name)}," for name in names), "]"]


def _comment(text: str, bullet: bool = False) -> list[str]:
    """``text`` as TOML comment lines of at most 100 characters (a list item if ``bullet``)."""
    first, rest = ("# - ", "#   ") if bullet else ("# ", "# ")
    return textwrap.wrap(
        text, 99, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def _spec_body(s: StudySettings) -> str:
    lines = [
        f'name = "{s.name}"',
        'description = "RErr vs random bit error rate, with the quantization, label smoothing '
        'and fixed-pattern ablations; energy on calibrated SRAM chips"',
        "seed = 0",
        f"patterns = {s.patterns}",
        'metrics = ["rerr", "err_faulty"]',
        "",
        "[data]",
        f'dataset = "{s.datasets[0]}"',
        f"test_limit = {s.test_limit}",
        f"train_limit = {s.train_limit}",
        "batch_size = 1000",
    ]
    for dataset in s.datasets:
        for bits, variants in s.variants:
            for variant in variants:
                lines += _model_lines(s, dataset, bits, variant)
    lines += _fault_lines(s)
    return "\n".join(lines) + "\n"


def _model_lines(s: StudySettings, dataset: str, bits: int, variant: Variant) -> list[str]:
    return [
        "",
        "[[models]]",
        f'name = "{dataset}-{bits}bit-{variant.key}"',
        f'label = "{variant.label}"',
        f'dataset = "{dataset}"',
        'architecture = "mlp"',
        f"options = {{ hidden = {list(s.hidden)} }}",
        f"bits = {bits}",
        *variant.recipe_lines(),
        f"epochs = {s.epochs}",
        "batch_size = 128",
        "lr = 0.05",
        f"training_seeds = {list(s.training_seeds)}",
    ]


def _fault_lines(s: StudySettings) -> list[str]:
    compared = [
        f"{dataset}-8bit-{v.key}"
        for dataset in s.datasets
        for v in ON_TRAINING_PATTERN
        if v in dict(s.variants).get(8, ())
    ]
    lines = [
        "",
        "[[faults]]",
        'name = "bit-errors"',
        'label = "random bit errors"',
        'type = "random_bit_errors"',
        f"rates = {list(s.rates)}",
        "sampler = 2",
    ]
    if compared:
        lines += [
            "",
            "[[faults]]",
            f'name = "{TRAINING_PATTERN}"',
            'label = "the fixed-pattern model\'s training pattern"',
            'type = "random_bit_errors"',
            f"rates = [0.01, {FIXED_PATTERN_RATE}]",
            "sampler = 2",
            f"seed = {FIXED_PATTERN_SEED}  # = fixed_pattern_seed: the very flips it trained on",
            "patterns = 1",
            *_toml_list("models", compared),
            "",
            "[[faults]]",
            f'name = "{RANDOM_PATTERNS}"',
            'label = "random bit errors at the fixed pattern\'s rate"',
            'type = "random_bit_errors"',
            f"rates = [{FIXED_PATTERN_RATE}]",
            "sampler = 2",
            *_toml_list("models", compared),
        ]
    return lines + sram_chip_entries(s.chips, s.voltages)


def sram_chip_entries(chips: int, voltages: Sequence[float]) -> list[str]:
    """Spec lines of synthetic SRAM chips 0..chips-1 calibrated to the paper's p(V) (the rate
    of flipped bits), at ``voltages``, with one placement of the weights per chip."""
    lines = []
    for chip in range(chips):
        lines += [
            "",
            "[[faults]]",
            f'name = "sram-chip{chip}"',
            f'label = "synthetic SRAM chip {chip}"',
            'type = "sram"',
            f"synthetic_chip = {chip}",
            'calibration = "bit_error_rate"',
            f"voltages = {list(voltages)}",
            "patterns = 1  # one placement of the weights per chip",
        ]
    return lines


VARIANTS = {
    "Normal": "global range ±1, symmetric, offset binary, truncation (the reference code's Normal)",
    "Normal (per-layer)": "per-layer range, symmetric, signed, truncation (the poster's first "
    "quantization row)",
    "Per-layer +asym": "per-layer asymmetric range, signed, truncation (the second row)",
    "Per-layer +asym +unsigned": "per-layer asymmetric, offset binary, truncation (the third row)",
    "RQuant": "per-layer asymmetric offset binary with rounding (the fourth row)",
    "Clipping": "RQuant + all parameters projected to ±w during training",
    "Clipping 0.1 + LS": "Clipping 0.1 trained with label smoothing 0.1 (the poster: label "
    "smoothing undoes clipping's robustness)",
    "RandBET": "Clipping w + random bit error training at p = 1 % (the paper's main setting) "
    "or the p given",
    "RandBET fixed pattern": f"Clipping 0.1 + bit error training on one fixed pattern (seed "
    f"{FIXED_PATTERN_SEED}) at p = {100 * FIXED_PATTERN_RATE:g} %, like one chip's errors",
}
"""What each variant label means, for the report: a label's entry is the longest key that is
the label or starts it (``Clipping 0.05`` → ``Clipping``)."""


def meaning(label: str) -> str | None:
    """The :data:`VARIANTS` entry of ``label``, or None."""
    keys = [k for k in VARIANTS if label == k or label.startswith(k + " ")]
    return VARIANTS[max(keys, key=len)] if keys else None


def study_spec(quick: bool, name: str = STUDY) -> tuple[CampaignSpec, str]:
    """The packaged spec ``specs/<name>.toml`` (full: about 1.5 hours on 2 cores) or
    ``specs/<name>-quick.toml`` (under 15 minutes)."""
    return packaged_spec(f"{name}-quick" if quick else name)


# -- the paper's ordering --------------------------------------------------------------------


def ordering_chains(labels: Collection[str]) -> list[list[str]]:
    """The paper's orderings Normal ≥ RQuant ≥ Clipping w ≥ RandBET w among ``labels``: one
    chain per w with both a Clipping and a RandBET model (else one chain of the baselines); the
    baseline is Normal, else Normal (per-layer)."""
    baseline = next((b for b in ("Normal", "Normal (per-layer)") if b in labels), None)
    head = [v for v in (baseline, "RQuant") if v in labels]
    pairs = [
        [label, f"RandBET {match[1]}"]
        for label in labels
        if (match := re.fullmatch(r"Clipping (\S+)", label)) and f"RandBET {match[1]}" in labels
    ]
    chains = [head + pair for pair in pairs] or [head]
    return [chain for chain in chains if len(chain) > 1]


def seed_means(rows: Sequence[dict[str, Any]], fault: str) -> dict[tuple[str, float], list[float]]:
    """(model, x) → the mean RErr over patterns of each training seed (in seed order)."""
    cells: dict[tuple[str, float], dict[Any, list[float]]] = {}
    for row in rows:
        if row["fault"] == fault:
            cell = cells.setdefault((row["model"], row["x"]), {})
            cell.setdefault(row["training_seed"], []).append(row["rerr"])
    return {
        key: [statistics.fmean(by_seed[s]) for s in sorted(by_seed, key=str)]
        for key, by_seed in cells.items()
    }


def by_setting(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict]]:
    """(dataset, bits) → variant label → record."""
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["bits"]), {})[record["variant"]] = record
    return groups


def headline_rate(record: dict[str, Any]) -> float:
    """The highest rate at which ``record``'s mean RErr stays below 50 % (the lowest rate if
    none): where the most robust model of a chain still separates from chance."""
    below = [r["bit_error_rate"] for r in record["results"] if r["rerr_mean"] < 0.5]
    return max(below) if below else record["results"][0]["bit_error_rate"]


def ordering_check(
    records: list[dict[str, Any]], rows: Sequence[dict[str, Any]] = (), fault: str = "bit-errors"
) -> list[str]:
    """Per (dataset, bits) and chain of :func:`ordering_chains`: mean RErr (and the range of the
    training seeds' means, from ``rows``) at the chain's :func:`headline_rate`, whether the
    paper's ordering holds there, and at how many rates it holds."""
    per_seed = seed_means(rows, fault)
    lines = []
    for (dataset, bits), by_variant in by_setting(records).items():
        for chain in ordering_chains(list(by_variant)):
            lines.append(_chain_line(dataset, bits, [by_variant[v] for v in chain], per_seed))
    return lines


def _chain_line(
    dataset: str,
    bits: int,
    chain: list[dict[str, Any]],
    per_seed: dict[tuple[str, float], list[float]],
) -> str:
    rate = headline_rate(chain[-1])
    rates = [r["bit_error_rate"] for r in chain[0]["results"]]
    holds_at = [p for p in rates if _holds(chain, p)]
    failed = ", ".join(f"{100 * p:g}" for p in rates if p not in holds_at)
    values = ", ".join(_value(record, rate, per_seed) for record in chain)
    names = " ≥ ".join(r["variant"] for r in chain)
    verdict = "holds" if _holds(chain, rate) else "does NOT hold"
    line = (
        f"- {dataset}, {bits} bit, p = {100 * rate:g} %: RErr {values} — {names} {verdict}; "
        f"it holds at {len(holds_at)} of {len(rates)} rates"
        + (f" (not at p = {failed} %)" if failed else "")
    )
    last = chain[-1]
    base = next((r for r in chain if r["variant"] == "RQuant"), chain[0])
    if last["variant"].startswith("RandBET"):
        line += (
            f"; {last['variant']}'s clean Err minus {base['variant']}'s: "
            f"{100 * (last['err'] - base['err']):+.2f} points"
        )
    return line + "."


#: The poster's ablations (CIFAR-10, 8 bit; papers.md §1.9): p and RErr % per label. The
#: quantization ladder is normally trained; label smoothing is on Clipping 0.15 there.
POSTER_ABLATIONS: dict[str, tuple[float, dict[str, float]]] = {
    "quantization ladder": (
        0.005,
        {
            "Normal (per-layer)": 24.76,
            "Per-layer +asym": 40.78,
            "Per-layer +asym +unsigned": 17.00,
            "RQuant": 11.28,
        },
    ),
    "label smoothing (the poster: on Clipping 0.15)": (
        0.01,
        {"Clipping 0.1": 13.08, "Clipping 0.1 + LS": 29.40},
    ),
}


def ablation_check(
    records: list[dict[str, Any]], rows: Sequence[dict[str, Any]] = (), fault: str = "bit-errors"
) -> list[str]:
    """Per (dataset, bits): the quantization ladder and label smoothing against clipping, at the
    poster's p, next to the poster's numbers (where the records have those models and p)."""
    per_seed = seed_means(rows, fault)
    lines = []
    for (dataset, bits), by_variant in by_setting(records).items():
        for what, (rate, poster) in POSTER_ABLATIONS.items():
            chain = [by_variant[v] for v in poster if v in by_variant]
            if len(chain) < 2 or any(_at(r, rate) is None for r in chain):
                continue
            values = ", ".join(
                f"{_value(r, rate, per_seed)} (poster {poster[r['variant']]:.2f})" for r in chain
            )
            lines.append(f"- {dataset}, {bits} bit, {what} at p = {100 * rate:g} %: RErr {values}.")
    return lines


def _at(record: dict[str, Any], rate: float) -> dict[str, Any] | None:
    return next((r for r in record["results"] if r["bit_error_rate"] == rate), None)


def _holds(chain: list[dict[str, Any]], rate: float) -> bool:
    cells = [_at(record, rate) for record in chain]
    if any(cell is None for cell in cells):
        return False
    return all(a["rerr_mean"] >= b["rerr_mean"] for a, b in zip(cells, cells[1:]))


def _value(
    record: dict[str, Any], rate: float, per_seed: dict[tuple[str, float], list[float]]
) -> str:
    cell = _at(record, rate)
    if cell is None:
        return f"{record['variant']} –"
    seeds = per_seed.get((record["name"], rate), [])
    spread = f" [{100 * min(seeds):.2f}–{100 * max(seeds):.2f}]" if len(seeds) > 1 else ""
    return f"{record['variant']} {100 * cell['rerr_mean']:.2f}{spread}"


# -- the fixed-pattern ablation ----------------------------------------------------------------


def training_pattern_rows(
    spec: CampaignSpec, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per model of the ``training-pattern`` entry and rate: mean RErr on that one pattern (and
    its range over training seeds) against mean RErr on random patterns at the same rate (every
    other random bit error entry, over patterns and training seeds)."""
    random_entries = {
        f.name
        for f in spec.faults
        if isinstance(f, RandomBitErrorsSpec) and f.name != TRAINING_PATTERN
    }
    result = []
    for model in spec.models:
        label = model.label or model.name
        mine = [r for r in rows if r["model"] == model.name]
        on_pattern = [r for r in mine if r["fault"] == TRAINING_PATTERN]
        for rate in sorted({r["x"] for r in on_pattern}):
            pattern = [r["rerr"] for r in on_pattern if r["x"] == rate]
            random = [r["rerr"] for r in mine if r["fault"] in random_entries and r["x"] == rate]
            result.append(
                {
                    "model": f"{spec.dataset_of(model)} {model.bits} bit {label}",
                    "bit_error_rate": rate,
                    "rerr_pattern": statistics.fmean(pattern),
                    "rerr_pattern_min": min(pattern),
                    "rerr_pattern_max": max(pattern),
                    "rerr_random": statistics.fmean(random) if random else None,
                    "random_trials": len(random),
                }
            )
    return result


def training_pattern_table(result: list[dict[str, Any]]) -> str:
    """Markdown: RErr (%) on the training pattern vs on random patterns, per model and rate."""
    rows = [
        {
            "model": r["model"],
            "p": f"{100 * r['bit_error_rate']:g}",
            "pattern": f"{100 * r['rerr_pattern']:.2f} "
            f"[{100 * r['rerr_pattern_min']:.2f}–{100 * r['rerr_pattern_max']:.2f}]",
            "random": None if r["rerr_random"] is None else 100 * r["rerr_random"],
        }
        for r in result
    ]
    headers = [
        "model",
        "p %",
        "RErr % on the training pattern [seeds' range]",
        "RErr % on random patterns",
    ]
    return markdown_table(rows, ["model", "p", "pattern", "random"], headers)


def training_pattern_findings(result: list[dict[str, Any]]) -> list[str]:
    """One line per model and rate of the fixed-pattern table: on the pattern vs random."""
    return [
        f"- {r['model']}, p = {100 * r['bit_error_rate']:g} %: RErr {100 * r['rerr_pattern']:.2f} "
        f"on the training pattern, {_percent(r['rerr_random'])} on random patterns."
        for r in result
    ]


def training_pattern_section(result: list[dict[str, Any]]) -> list[str]:
    """The report's section on the fixed-pattern ablation (nothing without its entry)."""
    if not result:
        return []
    return [
        "## Training on a fixed bit error pattern",
        "",
        f"RandBET fixed pattern trained on the one pattern of seed {FIXED_PATTERN_SEED} at "
        f"p = {100 * FIXED_PATTERN_RATE:g} % (every training seed on the same pattern, like "
        f"one chip's errors). Entry `{TRAINING_PATTERN}` evaluates it, RandBET 0.1 and "
        "Clipping 0.1 on that very pattern (at 1 % on its nested subset); the random patterns "
        "are the other random bit error entries at the same rate. The poster (CIFAR-10, "
        "+Clipping 0.15, trained at p = 2.5 %): 8.50 / 7.41 % RErr on the pattern at p = 1 / "
        "2.5 %, but 12.09 / 61.59 % on random patterns: fixed-pattern training does not "
        "generalize.",
        "",
        training_pattern_table(result),
        "",
    ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


# -- low-voltage SRAM --------------------------------------------------------------------------


def sram_energy(spec: CampaignSpec, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: every model on the spec's synthetic SRAM chips over its voltage grid (the
    rows of its ``sram`` entries), and the energy savings at ≤ 1 % and ≤ 2.5 % extra error over
    the 8-bit Normal model's Err."""
    entries = [f for f in spec.faults if isinstance(f, SRAMSpec)]
    if not entries:
        return {}
    chips = [
        make_chip(f.synthetic_chip, calibration=f.calibration)
        for f in entries
        if f.synthetic_chip is not None
    ]
    voltages = sorted({v for f in entries for v in f.voltages})
    names = {f.name for f in entries}
    energy = EnergyModel()
    results = {}
    for dataset in dict.fromkeys(spec.dataset_of(m) for m in spec.models):
        evaluated: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        for model in spec.models:
            if spec.dataset_of(model) != dataset:
                continue
            mine = [r for r in rows if r["model"] == model.name and r["fault"] in names]
            if not mine:
                continue
            per_seed = {r["training_seed"]: r["err_clean"] for r in mine}
            err = sum(per_seed.values()) / len(per_seed)  # mean over training seeds

            def evaluate(voltage: float, mine: list[dict[str, Any]] = mine) -> dict[str, Any]:
                values = [r["rerr"] for r in mine if r["x"] == voltage]
                return {"rerr": values, **chip_rates(chips, voltage)}

            point = find_operating_point(evaluate, voltages, 1.0, err, energy=energy)
            evaluated[f"{model.bits} bit {model.label or model.name}"] = (err, point.rows)
        if not evaluated:
            continue
        reference = "8 bit Normal" if "8 bit Normal" in evaluated else next(iter(evaluated))
        result = energy_savings(evaluated, voltages, reference=reference, energy=energy)
        patterns = {f.patterns or spec.patterns for f in entries}
        results[dataset] = {
            **result,
            "chips": [chip.id for chip in chips],
            "placements": max(patterns),
        }
        logging.getLogger(__name__).info(f"[{dataset}] SRAM energy: {len(evaluated)} models")
    return results


def energy_findings(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per dataset and budget: the energy saving of each model."""
    paper = {0.01: "about 20 %", 0.025: "about 30 %"}
    lines = []
    for dataset, result in results.items():
        by_budget: dict[float, list[str]] = {}
        for s in result["savings"]:
            saving = f"{100 * s['energy_saving']:.0f} %" if s["met"] else "none"
            by_budget.setdefault(s["budget"], []).append(f"{s['model']} {saving}")
        for budget, entries in by_budget.items():
            lines.append(
                f"- {dataset}, RErr ≤ Err({result['reference']}) + {100 * budget:g} points "
                f"(paper: {paper.get(budget, '?')} saving): " + ", ".join(entries) + "."
            )
    return lines


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    workers: int | None = 1,
    name: str = STUDY,
) -> dict[str, Any]:
    """Run the study's campaign (``specs/<name>[-quick].toml``) into ``out_dir`` and write its
    Markdown report, plot and JSON record there, named after ``name``."""
    out = Path(out_dir)
    spec, text = study_spec(quick, name)
    started = time.time()
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = model_records(spec, rows)
    rates = tuple(next(f for f in spec.faults if f.name == "bit-errors").rates)
    plot = plot_study(records, out / f"{name}.png")
    table = results_table(records, rates)
    checks = ordering_check(records, rows) + ablation_check(records, rows)
    on_pattern = training_pattern_rows(spec, rows)
    energy = sram_energy(spec, rows)
    energy_lines = energy_findings(energy)
    elapsed = time.time() - started
    compute = sum(r["wall_s"] for r in rows)
    model = spec.models[0]
    chips = next(iter(energy.values()))["chips"] if energy else []
    calibrations = {f.calibration for f in spec.faults if isinstance(f, SRAMSpec)}
    calibration_option, calibration_text = (
        "",
        ("as the fraction of failing cells (a stored bit flips with about p/2)"),
    )
    if calibrations == {"bit_error_rate"}:
        calibration_option = " --calibration bit-error-rate"
        calibration_text = "as the rate of flipped stored bits, the paper's definition"
    summary = {
        "mode": "quick" if quick else "full",
        "spec": text,
        "records": records,
        "findings": checks + training_pattern_findings(on_pattern) + energy_lines,
        "training_pattern": on_pattern,
        "sram": {"chips": chips, "results": energy},
        "provenance": provenance(),
        "seconds": round(elapsed, 1),
        "plot": plot.name,
        "report": str(out / f"{name}.md"),
        "store": str(out / "campaign.db"),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    labels = dict.fromkeys(m.label or m.name for m in spec.models)
    meanings = [f"{label} = {meaning(label)}" for label in labels if meaning(label)]
    lines = [
        f"# Stutz et al. 2021 reproduction: {spec.description or 'RErr under random bit errors'}",
        "",
        f"Command: `{command or f'bitrobust reproduce {name}'}` ({summary['mode']} mode; "
        f"the trials took {compute / 60:.1f} min of worker time on {platform.machine()} with "
        f"{torch.get_num_threads()} thread(s) per worker; this run {elapsed / 60:.1f} min, "
        "reusing the trained models and finished trials its campaign store already held).",
        "",
        provenance_line(summary["provenance"]),
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        f"of `{Path(summary['store']).name}` (`bitrobust campaign report` renders it).",
        "",
        f"Model: {model.architecture} {model.options}, {model.epochs} epochs, training seeds "
        f"{', '.join(map(str, model.training_seeds))}, "
        f"train examples: {spec.data.train_limit or 'all'}, first {spec.data.test_limit} test "
        f"examples, {spec.patterns} patterns per rate "
        f"(seeds {spec.seed}..{spec.seed + spec.patterns - 1}, "
        "nested across rates). RErr = an example is wrong if the clean or the faulty model errs; "
        "values are means over patterns and training seeds in %.",
        "",
        "Variants: " + "; ".join(meanings) + ".",
        "",
        table,
        "",
        "## Against the paper's claim",
        "",
        "Per chain of the paper's ordering: mean RErr (%) at the highest p where the chain's "
        "last model stays below 50 % RErr; the ablations at the poster's p; in brackets the "
        "range of the training seeds' means.",
        "",
        *checks,
        "",
        f"![RErr vs bit error rate]({plot.name})",
        "",
        *training_pattern_section(on_pattern),
        "## Low-voltage SRAM: error and energy",
        "",
        f"Each model on {len(chips)} synthetic chips (`bitrobust sram make-chip --seed 0..."
        f"{len(chips) - 1}{calibration_option}`: 32 arrays of 512×64 cells, p(V) from the "
        f"paper's poster {calibration_text}, row/column correlated failures, 60 % stuck-at-1) "
        "with one placement of the weights, at voltages "
        "relative to V_min; energy per access (V/V_min)². The saving is read at the lowest "
        "voltage whose mean RErr stays within the budget there and at every higher voltage of "
        "the grid.",
        "",
        *energy_lines,
        "",
    ]
    for dataset, result in energy.items():
        lines += [
            f"### {dataset}: energy savings",
            "",
            savings_table(result),
            "",
            f"### {dataset}: mean RErr (%) vs voltage",
            "",
            voltage_table(result),
            "",
        ]
    (out / f"{name}.md").write_text("\n".join(lines))
    return summary


__all__ = [
    "FULL",
    "QUICK",
    "VARIANTS",
    "StudySettings",
    "Variant",
    "estimate",
    "ordering_check",
    "render_spec",
    "reproduce",
    "spec_text",
    "study_spec",
    "training_pattern_rows",
]
