"""Campaigns end to end: spec validation, stable trial ids, resume after kill -9 or SIGINT,
identical results on every executor, adaptive stopping and the command line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bitrobust.campaign import plan as planning
from bitrobust.campaign.executors import InProcessExecutor, LocalExecutor, StopFlag
from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.spec import load_spec, parse_spec, spec_hash
from bitrobust.campaign.store import CampaignStore
from bitrobust.checkpoint import load_checkpoint
from bitrobust.cli import main
from bitrobust.errors import BitrobustError

TINY = """
name = "tiny"
patterns = 3
metrics = ["rerr", "err_faulty"]

[data]
dataset = "digits"
test_limit = 200

[[models]]
name = "normal"
architecture = "mlp"
options = { hidden = [32] }
epochs = 1

[[faults]]
name = "bit-errors"
type = "random_bit_errors"
rates = [0.01, 0.05]
"""

PROVENANCE_COLUMNS = ("wall_s", "finished_at")


def write_spec(folder: Path, text: str = TINY, name: str = "spec.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def exported_rows(store: Path, out: Path) -> list[dict[str, str]]:
    """The store's CSV export without the columns that differ between runs (timings)."""
    with CampaignStore.open_existing(store) as opened:
        opened.export(out, "csv")
    with open(out, newline="") as stream:
        return [
            {k: v for k, v in row.items() if k not in PROVENANCE_COLUMNS}
            for row in csv.DictReader(stream)
        ]


def run(spec_path: Path, store: Path, executor=None, **options):
    spec, text = load_spec(spec_path)
    return run_campaign(spec, text, store, executor, **options)


# -- spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (("rates = [0.01, 0.05]", "ratez = [0.01]"), "faults[0].ratez: unknown key"),
        (("rates = [0.01, 0.05]", "rates = [0.01, 1.5]"), "faults[0].rates[1]"),
        (("patterns = 3", 'patterns = "many"'), "patterns"),
        (('architecture = "mlp"', 'architecture = "transformer"'), "unknown architecture"),
        (('dataset = "digits"', 'dataset = "imagenet"'), "unknown dataset"),
        (('type = "random_bit_errors"', 'type = "cosmic_rays"'), "faults[0]"),
        (("epochs = 1", "epochs = 1\nmethod = 'dropout'"), "unknown method"),
        (("[[faults]]", "[[faults]]\nmodels = ['nobody']"), "unknown model(s): nobody"),
        (("patterns = 3", "patterns = 3\npatterns = 4"), "not valid TOML"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_key(change, message):
    text = TINY.replace(*change)
    assert text != TINY
    with pytest.raises(BitrobustError) as caught:
        parse_spec(text, "spec x.toml")
    line = str(caught.value)
    assert line.startswith("spec x.toml: ") and message in line and "\n" not in line


def test_a_bad_spec_on_the_command_line_exits_2_without_a_traceback(tmp_path, capsys):
    path = write_spec(tmp_path, TINY.replace("rates =", "rate ="))
    assert main(["campaign", "run", str(path), "--store", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitrobust: error: spec ") and "Traceback" not in err
    assert not (tmp_path / "s.db").exists()


def test_the_spec_hash_ignores_formatting_but_not_content():
    a = parse_spec(TINY)
    b = parse_spec("# comment\n" + TINY.replace("rates = [0.01, 0.05]", "rates = [ 0.01,0.05 ]"))
    c = parse_spec(TINY.replace("patterns = 3", "patterns = 4"))
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)


# -- plan ------------------------------------------------------------------------------------


def _ids(text: str, folder: Path) -> dict[tuple, str]:
    spec = parse_spec(text)
    jobs = planning.training_jobs(spec, folder)
    instances = planning.model_instances(spec, jobs)
    trials = planning.plan_trials(spec, instances, {})
    return {
        (
            t.instance.model,
            t.instance.training_seed,
            t.setting.fault,
            t.setting.x,
            t.seed,
        ): t.trial_id
        for t in trials
    }


def test_trial_ids_are_stable_and_change_only_with_what_produced_the_trial(tmp_path):
    base = _ids(TINY, tmp_path)
    assert len(base) == len(set(base.values())) == 2 * 3
    assert _ids(TINY, tmp_path) == base
    # another fault entry adds trials and leaves the others' ids alone
    extra = TINY + '\n[[faults]]\nname = "stuck"\ntype = "stuck_at_cells"\nrates = [0.01]\n'
    grown = _ids(extra, tmp_path)
    assert {k: v for k, v in grown.items() if k[2] == "bit-errors"} == base
    # a changed recipe is another model: new ids
    changed = _ids(TINY.replace("epochs = 1", "epochs = 2"), tmp_path)
    assert set(changed.values()).isdisjoint(base.values())
    # common random numbers: pattern k has seed spec.seed + k at every rate
    assert sorted({k[4] for k in base}) == [0, 1, 2]


def test_a_changed_recipe_retrains_only_the_model_it_affects(tmp_path):
    two = TINY.replace(
        "[[faults]]",
        '[[models]]\nname = "clipped"\narchitecture = "mlp"\noptions = { hidden = [32] }\n'
        'method = "clipping"\nw_max = 0.1\nepochs = 1\n\n[[faults]]',
    )
    spec = parse_spec(two)
    before = {j.model: j.fingerprint for j in planning.training_jobs(spec, tmp_path)}
    after_spec = parse_spec(two.replace("w_max = 0.1", "w_max = 0.05"))
    after = {j.model: j.fingerprint for j in planning.training_jobs(after_spec, tmp_path)}
    assert before["normal"] == after["normal"] and before["clipped"] != after["clipped"]


# -- running ---------------------------------------------------------------------------------


def test_run_then_rerun_does_nothing_new(tmp_path):
    spec_path = write_spec(tmp_path)
    first = run(spec_path, tmp_path / "s.db")
    assert (first.total, first.done, first.new, first.trained) == (6, 6, 6, 1)
    again = run(spec_path, tmp_path / "s.db")
    assert (again.done, again.new, again.trained) == (6, 0, 0)
    with CampaignStore.open_existing(tmp_path / "s.db") as store:
        records = store.records()
    assert len(records) == 6
    row = records[0]
    assert {"rerr", "err_faulty", "errors_robust", "examples", "flips"} <= set(row.metrics)
    assert row.params["x_name"] == "bit_error_rate" and row.torch_version and row.device == "cpu"
    assert row.params["fault_model"].startswith("random_bit_errors(")
    assert row.metrics["errors_robust"] == round(row.metrics["rerr"] * row.metrics["examples"])


def test_more_patterns_later_keep_the_finished_ones(tmp_path):
    spec_path = write_spec(tmp_path)
    run(spec_path, tmp_path / "s.db")
    before = exported_rows(tmp_path / "s.db", tmp_path / "a.csv")
    grown = write_spec(tmp_path, TINY.replace("patterns = 3", "patterns = 5"), "grown.toml")
    result = run(grown, tmp_path / "s.db", force=True)
    assert (result.total, result.new, result.trained) == (10, 4, 0)
    after = exported_rows(tmp_path / "s.db", tmp_path / "b.csv")
    assert all(row in after for row in before)


def test_a_store_from_another_spec_is_refused_without_force(tmp_path):
    run(write_spec(tmp_path), tmp_path / "s.db")
    other = write_spec(tmp_path, TINY.replace("rates = [0.01, 0.05]", "rates = [0.02]"), "o.toml")
    with pytest.raises(BitrobustError, match="another spec"):
        run(other, tmp_path / "s.db")


def test_a_bad_fault_value_fails_before_any_trial(tmp_path):
    text = (
        TINY + '\n[[faults]]\nname = "sram"\ntype = "sram"\nsynthetic_chip = 0\nvoltages = [0.5]\n'
    )
    with pytest.raises(BitrobustError, match="fault 'sram': voltage 0.5 is outside"):
        run(write_spec(tmp_path, text), tmp_path / "s.db")
    with CampaignStore.open_existing(tmp_path / "s.db") as store:
        assert store.status()["done"] == 0


def test_every_fault_source_runs_in_one_campaign(tmp_path, evoapprox_dir):
    if not any(evoapprox_dir.glob("*")):
        pytest.skip("EvoApprox tables not found")
    text = TINY + (
        '\n[[faults]]\nname = "stuck"\ntype = "stuck_at_cells"\nrates = [0.01]\n'
        '\n[[faults]]\nname = "sram"\ntype = "sram"\nsynthetic_chip = 1\nvoltages = [0.85]\n'
        '\n[[faults]]\nname = "pe"\ntype = "pe_faults"\nfault_rates = [0.25]\nbit = 14\n'
        'stuck_at = 1\n[faults.accelerator]\nmultiplier = "exact8u"\narray = "tpu"\nsize = 4\n'
        "calibration = 100\n"
        '\n[[faults]]\nname = "per-bit"\ntype = "random_bit_errors"\nrates = [0.05]\n'
        "per_layer = true\nper_bit = true\n"
    )
    result = run(write_spec(tmp_path, text), tmp_path / "s.db")
    with CampaignStore.open_existing(tmp_path / "s.db") as store:
        rows = [r.flat() for r in store.records()]
    by_fault = {}
    for row in rows:
        by_fault.setdefault(row["fault"], []).append(row)
    assert set(by_fault) == {"bit-errors", "stuck", "sram", "pe", "per-bit"}
    assert all(r["faulty_macs"] > 0 for r in by_fault["pe"])
    assert {r["accelerator"] for r in by_fault["pe"]} == {"exact8u on tpu4"}
    layers = {r["layer"] for r in by_fault["per-bit"]}
    bits = {r["bit"] for r in by_fault["per-bit"]}
    assert len(layers) == 4 and bits == set(range(8))  # 2 weights + 2 biases, 8-bit codes
    assert result.done == result.total == len(rows)


def test_adaptive_stopping_adds_patterns_until_narrow_or_max(tmp_path):
    wide = TINY + "\n[adaptive]\ntarget_halfwidth = 0.0001\nmax_patterns = 6\n"
    result = run(write_spec(tmp_path, wide), tmp_path / "s.db")
    assert result.total == result.done == 2 * 6  # too wide at every count: up to the maximum
    # rerunning after adaptive rounds plans the same trials and runs nothing
    assert run(write_spec(tmp_path, wide), tmp_path / "s.db").new == 0
    narrow = TINY + "\n[adaptive]\ntarget_halfwidth = 0.9\nmax_patterns = 6\n"
    result = run(write_spec(tmp_path, narrow, "n.toml"), tmp_path / "n.db")
    assert result.total == 2 * 3  # narrow enough at the spec's 3 patterns


def test_the_process_pool_gives_the_same_rows_as_this_process(tmp_path):
    spec_path = write_spec(tmp_path)
    run(spec_path, tmp_path / "a.db", InProcessExecutor())
    with LocalExecutor(2) as pool:
        run(spec_path, tmp_path / "b.db", pool)
    assert exported_rows(tmp_path / "a.db", tmp_path / "a.csv") == exported_rows(
        tmp_path / "b.db", tmp_path / "b.csv"
    )


def test_ray_gives_the_same_rows_as_the_local_pool(tmp_path):
    ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
    from bitrobust.campaign.executors import RayExecutor

    spec_path = write_spec(tmp_path)
    with LocalExecutor(2) as pool:
        run(spec_path, tmp_path / "local.db", pool)
    checkpoints = tmp_path / "local.db.checkpoints"
    with RayExecutor(2) as executor:
        assert ray.is_initialized()
        run(spec_path, tmp_path / "ray.db", executor, checkpoint_dir=tmp_path / "ray-ckpt")
    assert not ray.is_initialized()
    assert exported_rows(tmp_path / "local.db", tmp_path / "l.csv") == exported_rows(
        tmp_path / "ray.db", tmp_path / "r.csv"
    )
    # trained separately on each executor, to the same weights
    (local,) = checkpoints.glob("*.safetensors")
    (remote,) = (tmp_path / "ray-ckpt").glob("*.safetensors")
    assert local.name == remote.name
    a, b = load_checkpoint(local).model.state_dict(), load_checkpoint(remote).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- executors: a dying worker, a stop request ------------------------------------------------


def die_once(item: dict) -> int:
    """Kills its worker process the first time it sees ``item['marker']`` missing."""
    marker = Path(item["marker"])
    if item["die"] and not marker.exists():
        marker.write_text("died")
        os._exit(9)
    return item["value"] * 2


def test_a_worker_that_dies_mid_trial_is_retried_not_lost(tmp_path):
    items = [{"marker": str(tmp_path / "m"), "die": i == 2, "value": i} for i in range(6)]
    with LocalExecutor(2) as pool:
        results = dict(pool.map(die_once, items, StopFlag()))
    assert results == {i: 2 * i for i in range(6)}
    assert (tmp_path / "m").exists()


def test_a_stop_request_starts_nothing_new():
    stop = StopFlag()
    seen = []
    for index, _ in InProcessExecutor().map(lambda x: x, list(range(5)), stop):
        seen.append(index)
        stop.stopping = index == 1
    assert seen == [0, 1]


# -- killed and interrupted runs -----------------------------------------------------------


LONG = TINY.replace("patterns = 3", "patterns = 400").replace(
    "rates = [0.01, 0.05]", "rates = [0.001, 0.005, 0.01, 0.02, 0.05]"
)


def _start(spec_path: Path, store: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bitrobust", "campaign", "run", str(spec_path)]
    return subprocess.Popen(
        [*command, "--store", str(store), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_trials(store: Path, process: subprocess.Popen, at_least: int) -> int:
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended early: {process.stderr.read()}")
        if store.exists():
            try:
                with CampaignStore.open_existing(store) as opened:
                    done = opened.status()["done"]
            except BitrobustError:
                done = 0
            if done >= at_least:
                return done
        time.sleep(0.05)
    pytest.fail("no trials recorded in time")


def test_kill_9_then_rerun_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    spec_path = write_spec(tmp_path, LONG)
    reference = tmp_path / "reference.db"
    run(spec_path, reference)
    killed = tmp_path / "killed.db"
    process = _start(spec_path, killed)
    _wait_for_trials(killed, process, at_least=20)
    process.kill()
    process.wait()
    with CampaignStore.open_existing(killed) as store:
        partial = store.status()
    assert 0 < partial["done"] < partial["total"] == 2000
    resumed = run(spec_path, killed, checkpoint_dir=tmp_path / "killed.db.checkpoints")
    assert resumed.new == 2000 - partial["done"] and resumed.trained == 0
    assert exported_rows(killed, tmp_path / "k.csv") == exported_rows(reference, tmp_path / "r.csv")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_trials_in_flight_and_rerun_completes(tmp_path, signum):
    spec_path = write_spec(tmp_path, LONG)
    store = tmp_path / "s.db"
    process = _start(spec_path, store)
    _wait_for_trials(store, process, at_least=16)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "finishing the trials in flight" in err and "Traceback" not in err
    with CampaignStore.open_existing(store) as opened:
        assert opened.status()["done"] < 2000
    assert run(spec_path, store).done == 2000


def test_a_second_concurrent_run_is_refused(tmp_path):
    spec_path = write_spec(tmp_path, LONG)
    store = tmp_path / "s.db"
    process = _start(spec_path, store)
    try:
        _wait_for_trials(store, process, at_least=1)
        with pytest.raises(BitrobustError, match="in use by another campaign run"):
            run(spec_path, store)
    finally:
        process.kill()
        process.wait()


# -- command line ----------------------------------------------------------------------------


def test_status_export_and_json(tmp_path, capsys):
    spec_path = write_spec(tmp_path)
    store = tmp_path / "s.db"
    assert (
        main(["campaign", "run", str(spec_path), "--store", str(store), "--workers", "1", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["done"] == out["total"] == 6 and out["interrupted"] is False
    assert main(["campaign", "status", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["total"] == status["done"] == 6
    assert (
        main(
            [
                "campaign",
                "export",
                str(store),
                "--format",
                "csv",
                "--out",
                str(tmp_path / "x.csv"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["trials"] == 6
    with open(tmp_path / "x.csv", newline="") as stream:
        ids = [row["trial_id"] for row in csv.DictReader(stream)]
    assert ids == sorted(ids) and len(ids) == 6
    out = tmp_path / "report"
    assert main(["campaign", "report", str(store), "--out", str(out), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["html"]).is_file() and Path(paths["markdown"]).read_text().startswith("#")
    assert main(["campaign", "status", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_chip_calibrated_to_the_bit_error_rate_flips_about_twice_as_many_bits(tmp_path):
    text = TINY.replace("rates = [0.01, 0.05]\n", "rates = [0.01]\n") + "".join(
        f'\n[[faults]]\nname = "{name}"\ntype = "sram"\nsynthetic_chip = 0\nvoltages = [0.8]\n'
        + extra
        for name, extra in (("cells", ""), ("bits", 'calibration = "bit_error_rate"\n'))
    )
    run(write_spec(tmp_path, text), tmp_path / "s.db")
    with CampaignStore.open_existing(tmp_path / "s.db") as store:
        flips = {}
        for record in store.records():
            flips.setdefault(record.params["fault"], []).append(record.metrics["flips"])
    ratio = sum(flips["bits"]) / sum(flips["cells"])
    assert 1.6 < ratio < 2.4
    with pytest.raises(BitrobustError, match="calibration applies to synthetic chips only"):
        parse_spec(text.replace("synthetic_chip = 0", 'chip = "c.npz"'))


def test_fault_free_entries_are_one_table_in_the_report(tmp_path):
    text = TINY + "".join(
        f'\n[[faults]]\nname = "free-{m}"\ntype = "fault_free"\n[faults.accelerator]\n'
        f'multiplier = "{m}"\nsize = 4\ncalibration = 50\n'
        for m in ("exact8u", "trunc8u_k2")
    )
    result = run(write_spec(tmp_path, text), tmp_path / "s.db")
    assert result.total == 6 + 2  # one trial per fault-free entry, whatever `patterns` says
    assert main(["campaign", "report", str(tmp_path / "s.db"), "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert report.count("## Fault free") == 1 and "Fault entry: free-" not in report
    assert "exact8u on tpu4" in report and "trunc8u_k2 on tpu4" in report


def test_a_study_run_stops_on_a_signal_like_campaign_run(tmp_path):
    """`bitrobust demo` and `reproduce` run their spec through run_study_spec: SIGTERM finishes
    the trials in flight, the command exits 130, and a rerun completes."""
    spec_path = write_spec(tmp_path, LONG)
    out = tmp_path / "study"
    script = (
        "import sys\n"
        "from bitrobust.campaign.spec import load_spec\n"
        "from bitrobust.experiments.campaigns import run_study_spec\n"
        f"spec, text = load_spec({str(spec_path)!r})\n"
        "try:\n"
        f"    run_study_spec(spec, text, {str(out)!r})\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_trials(out / "campaign.db", process, at_least=16)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "finishing the trials in flight" in err and "Traceback" not in err
    with CampaignStore.open_existing(out / "campaign.db") as opened:
        assert opened.status()["done"] < 2000
    assert run(spec_path, out / "campaign.db", checkpoint_dir=out / "checkpoints").done == 2000
