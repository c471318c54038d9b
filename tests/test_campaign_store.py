"""The campaign store: round trips, atomic and idempotent writes, spec checks, the run lock,
crash safety, read-only readers, and export."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bitrobust.campaign import store as store_module
from bitrobust.campaign.store import STORE_FORMAT, CampaignStore, TrialRecord
from bitrobust.errors import BitrobustError

SPEC_HASH = "a1b2c3d4e5f60718"
SPEC_TEXT = 'name = "test"\npatterns = 2\n'


def trial(index: int, **metrics_overrides) -> TrialRecord:
    """A trial record whose params and metrics hold every JSON scalar kind."""
    metrics = {
        "err_clean": 0.125,
        "err_faulty": 0.25 + index / 7,
        "rerr": None,
        "flips": 3 * index,
        "examples": 1000,
    }
    metrics.update(metrics_overrides)
    return TrialRecord(
        trial_id=f"{index:016x}",
        params={"model": "normal", "training_seed": 0, "x": 0.01 * index, "robust": index % 2 == 0},
        seed=index,
        metrics=metrics,
        wall_s=0.5 + index,
        package_version="0.2.0",
        torch_version="2.13.0",
        device="cpu",
        finished_at=1_700_000_000.25 + index,
    )


def new_store(path: Path, spec_hash: str = SPEC_HASH, **kwargs) -> CampaignStore:
    return CampaignStore.create_or_open(path, spec_hash, SPEC_TEXT, **kwargs)


def run_python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "campaign.db"


# -- records -----------------------------------------------------------------------------------


def test_records_round_trip_with_every_scalar_kind(path: Path) -> None:
    trials = [trial(3), trial(1, rerr=-0.5, note="tiny"), trial(2, flips=None)]
    with new_store(path) as store:
        assert store.record(trials) == 3
    with CampaignStore.open_existing(path) as store:
        assert store.records() == sorted(trials, key=lambda r: r.trial_id)
        got = store.records()[0]
    assert type(got.metrics["flips"]) is int and type(got.metrics["err_clean"]) is float
    assert got.params["robust"] is False and got.metrics["rerr"] == -0.5
    flat = got.flat()
    assert list(flat)[:6] == ["trial_id", "model", "training_seed", "x", "robust", "seed"]
    assert list(flat)[-5:] == [
        "wall_s",
        "package_version",
        "torch_version",
        "device",
        "finished_at",
    ]
    assert flat["trial_id"] == "0000000000000001" and flat["note"] == "tiny" and flat["seed"] == 1


def test_a_trial_is_recorded_once(path: Path) -> None:
    with new_store(path) as store:
        assert store.record([trial(1), trial(2)]) == 2
        assert store.record([trial(2, err_clean=0.9), trial(3)]) == 1
        assert store.record([]) == 0
        assert store.done_ids() == {f"{i:016x}" for i in (1, 2, 3)}
        assert store.records()[1].metrics["err_clean"] == 0.125  # the first record stays


def test_numpy_scalars_are_stored_as_python_scalars(path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    metrics = {"flips": numpy.int64(7), "ok": numpy.bool_(True), "err": numpy.float32(0.5)}
    with new_store(path) as store:
        store.record([trial(1, **metrics)])
        got = store.records()[0].metrics
    assert (got["flips"], got["ok"], got["err"]) == (7, True, 0.5)
    assert type(got["flips"]) is int and type(got["ok"]) is bool


def test_a_batch_with_an_unserialisable_metric_records_nothing(path: Path) -> None:
    with new_store(path) as store:
        with pytest.raises(TypeError, match="0000000000000002"):
            store.record([trial(1), trial(2, err_clean=object()), trial(3)])
        assert store.done_ids() == set()
        assert store.record([trial(1), trial(3)]) == 2


def test_a_batch_failing_inside_sqlite_is_rolled_back_with_a_one_line_error(path: Path) -> None:
    with new_store(path) as store:
        store.record([trial(0)])
        with sqlite3.connect(path) as other:
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON trials WHEN NEW.seed = 2 "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        other.close()
        with pytest.raises(BitrobustError, match="disk on fire") as caught:
            store.record([trial(1), trial(2), trial(3)])
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
        assert store.done_ids() == {f"{0:016x}"}
        assert store.record([trial(1), trial(3)]) == 2
    assert integrity(path) == "ok"


def test_a_locked_database_is_reported_as_such(path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    with new_store(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(BitrobustError, match="is locked by another process"):
            store.record([trial(1)])
        other.execute("ROLLBACK")
        other.close()
        assert store.record([trial(1)]) == 1


def test_a_reader_cannot_write(path: Path) -> None:
    new_store(path).close()
    with CampaignStore.open_existing(path) as store, pytest.raises(RuntimeError, match="read-only"):
        store.record([trial(1)])


# -- plan, status, meta --------------------------------------------------------------------------


def test_plan_and_status(path: Path) -> None:
    ids = [f"{i:016x}" for i in range(4)]
    with new_store(path) as store:
        assert store.status() == {
            "spec_hash": SPEC_HASH,
            "total": 0,
            "done": 0,
            "pending": 0,
            "other": 0,
        }
        store.set_planned(ids[:3])
        store.add_planned([ids[2], ids[3]])
        assert store.planned_ids() == set(ids)
        store.set_planned(ids[:3])  # replaces
        assert store.planned_ids() == set(ids[:3])
        store.record([trial(0), trial(1), trial(9)])
        store.set_meta("name", "quickstart")
        status = store.status()
    assert status == {
        "spec_hash": SPEC_HASH,
        "name": "quickstart",
        "total": 3,
        "done": 2,
        "pending": 1,
        "other": 1,
    }
    with CampaignStore.open_existing(path) as store:
        assert store.status() == status
        assert [r.trial_id for r in store.records(planned_only=True)] == ids[:2]
        assert len(store.records()) == 3


def test_a_new_store_is_wal_with_its_meta(path: Path) -> None:
    with new_store(path) as store:
        meta = store.meta()
        assert Path(f"{path}.lock").read_text().strip() == str(os.getpid())
    assert meta["format"] == str(STORE_FORMAT)
    assert (meta["spec_hash"], meta["spec_text"]) == (SPEC_HASH, SPEC_TEXT)
    assert meta["package_version"] and meta["created_at"].startswith("20")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert not Path(f"{path}.lock").exists()  # removed on close


# -- opening: spec, foreign files, formats -----------------------------------------------------


def test_another_spec_is_refused_unless_forced(path: Path) -> None:
    with new_store(path) as store:
        store.record([trial(1)])
    with pytest.raises(BitrobustError, match="made from another spec") as caught:
        new_store(path, "ffffffffffffffff")
    message = str(caught.value)
    assert str(path) in message and "--force" in message and SPEC_HASH in message
    with new_store(path, SPEC_HASH) as store:  # the same spec reopens
        assert store.done_ids() == {f"{1:016x}"}
    with new_store(path, "ffffffffffffffff", force=True) as store:
        assert store.meta()["spec_hash"] == "ffffffffffffffff"
        assert store.done_ids() == {f"{1:016x}"}  # rows stay: ids are content addressed
    new_store(path, "ffffffffffffffff").close()


def foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (x REAL)")
    conn.execute("INSERT INTO results VALUES (1.5)")
    conn.commit()
    conn.close()


def meta_without_format(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('spec_hash', 'x')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_text("model,err\nmlp,0.1\n"),
        lambda p: p.write_bytes(bytes(range(256)) * 8),
        foreign_sqlite,
        meta_without_format,
    ],
    ids=["text", "binary", "foreign-sqlite", "meta-without-format"],
)
def test_a_file_that_is_no_store_is_refused_and_left_alone(path: Path, make) -> None:
    make(path)
    before = path.read_bytes()
    for open_it in (lambda: new_store(path), lambda: new_store(path, force=True)):
        with pytest.raises(BitrobustError, match="is not a bitrobust campaign store") as caught:
            open_it()
        assert str(path) in str(caught.value)
    with pytest.raises(BitrobustError, match="is not a bitrobust campaign store"):
        CampaignStore.open_existing(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_newer_format_is_refused(path: Path) -> None:
    with new_store(path) as store:
        store.set_meta("format", str(STORE_FORMAT + 1))
    for open_it in (lambda: new_store(path), lambda: CampaignStore.open_existing(path)):
        with pytest.raises(BitrobustError, match=f"format {STORE_FORMAT + 1}, newer"):
            open_it()


def test_an_empty_file_becomes_a_store(path: Path) -> None:
    path.touch()
    with new_store(path) as store:
        assert store.record([trial(1)]) == 1


def test_a_missing_store_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(BitrobustError, match=r"store .*nope\.db does not exist"):
        CampaignStore.open_existing(missing)
    assert not missing.exists()


def test_create_or_open_makes_missing_folders(tmp_path: Path) -> None:
    with new_store(tmp_path / "a" / "b" / "c.db") as store:
        assert store.done_ids() == set()


# -- the run lock --------------------------------------------------------------------------------


def test_a_second_writer_is_refused_while_readers_are_welcome(path: Path) -> None:
    with new_store(path) as store:
        store.record([trial(1)])
        with pytest.raises(
            BitrobustError, match=rf"in use by another campaign run \(pid {os.getpid()}\)"
        ):
            new_store(path)
        with CampaignStore.open_existing(path) as reader:
            assert reader.done_ids() == {f"{1:016x}"}
        store.record([trial(2)])
    with new_store(path) as store:
        assert len(store.done_ids()) == 2


HOLD_LOCK = """
    import os, sys, time
    from bitrobust.campaign.store import CampaignStore
    store = CampaignStore.create_or_open(sys.argv[1], "a1b2c3d4e5f60718", "spec")
    if os.fork() == 0:  # a forked worker must not keep the lock alive
        print(os.getpid(), flush=True)  # after the fork hooks ran
        time.sleep(60)
        os._exit(0)
    time.sleep(60)
"""


def test_the_lock_dies_with_its_process_not_with_its_forked_children(path: Path) -> None:
    holder = run_python(HOLD_LOCK, str(path))
    worker = int(holder.stdout.readline())
    try:
        with pytest.raises(
            BitrobustError, match=rf"in use by another campaign run \(pid {holder.pid}\)"
        ):
            new_store(path)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with new_store(path) as store:  # the forked worker still lives
            assert store.record([trial(1)]) == 1
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
        os.kill(worker, signal.SIGKILL)


# -- crash safety --------------------------------------------------------------------------------

RECORD_FOREVER = """
    import sys
    from bitrobust.campaign.store import CampaignStore, TrialRecord
    store = CampaignStore.create_or_open(sys.argv[1], "a1b2c3d4e5f60718", "spec")
    i = 0
    while True:
        store.record([TrialRecord(
            trial_id=f"{i:016x}", params={"i": i, "pad": "x" * 200}, seed=i,
            metrics={"v": i / 3}, wall_s=0.1, package_version="p", torch_version="t",
            device="cpu", finished_at=1.0,
        )])
        print(i, flush=True)
        i += 1
"""


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_a_sigkilled_run_leaves_a_consistent_store_with_every_recorded_trial(path: Path) -> None:
    writer = run_python(RECORD_FOREVER, str(path))
    try:
        last = -1
        while last < 150:
            last = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert integrity(path) == "ok"
    with new_store(path) as store:  # the lock is free again
        records = store.records()
    done = [int(r.trial_id, 16) for r in records]
    assert done == list(range(len(done))) and len(done) >= last + 1
    for r in records:
        assert r.params == {"i": r.seed, "pad": "x" * 200} and r.metrics == {"v": r.seed / 3}


# -- read-only -----------------------------------------------------------------------------------


def test_a_read_only_copy_can_be_read(path: Path, tmp_path: Path) -> None:
    with new_store(path) as store:
        store.set_planned([f"{i:016x}" for i in range(3)])
        store.record([trial(0), trial(1)])
        status = store.status()
    frozen_dir = tmp_path / "frozen"
    frozen_dir.mkdir()
    frozen = frozen_dir / "campaign.db"
    shutil.copy(path, frozen)
    before = frozen.read_bytes()
    frozen.chmod(0o444)
    frozen_dir.chmod(0o555)
    try:
        with CampaignStore.open_existing(frozen) as store:
            assert store.status() == status
            assert store.records() == [trial(0), trial(1)]
            exported = store.export(tmp_path / "out.csv", "csv")
        assert exported.read_text().count("\n") == 3
        if os.geteuid() != 0:  # root writes through any mode bits
            with pytest.raises(BitrobustError, match="is read-only"):
                new_store(frozen)
            assert sorted(p.name for p in frozen_dir.iterdir()) == ["campaign.db"]
        assert frozen.read_bytes() == before
    finally:
        frozen_dir.chmod(0o755)
        frozen.chmod(0o644)


def test_create_or_open_refuses_a_read_only_store(path: Path, monkeypatch) -> None:
    new_store(path).close()
    before = path.read_bytes()
    monkeypatch.setattr(store_module.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(BitrobustError, match=r"campaign\.db is read-only$"):
        new_store(path)
    assert path.read_bytes() == before


def test_a_lock_file_that_cannot_be_created_means_read_only(path: Path, monkeypatch) -> None:
    real_open = os.open

    def refuse_lock(name, *args, **kwargs):
        if str(name).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "open", refuse_lock)
    with pytest.raises(BitrobustError, match="is read-only"):
        new_store(path)


def test_a_database_write_refused_by_sqlite_is_reported_as_read_only(path: Path) -> None:
    with new_store(path) as store:
        store._conn.execute("PRAGMA query_only = ON")  # what SQLite says on a read-only file
        with pytest.raises(BitrobustError, match="is read-only"):
            store.record([trial(1)])
        store._conn.execute("PRAGMA query_only = OFF")
        assert store.record([trial(1)]) == 1


# -- export --------------------------------------------------------------------------------------


def mixed_trials() -> list[TrialRecord]:
    """Trials whose params and metrics differ in keys, recorded out of id order."""
    odd = TrialRecord(
        trial_id="00000000000000ff",
        params={"model": "clipped", "x_name": "rate", "layer": 2},
        seed=7,
        metrics={"flips": 0, "accuracy_loss": -0.0},
        wall_s=1.0,
        package_version="0.2.0",
        torch_version="2.13.0",
        device="cuda",
        finished_at=2.0,
    )
    return [trial(5), odd, trial(2), trial(11, errors_robust="3,4")]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_export_csv_is_sorted_with_stable_columns(path: Path, tmp_path: Path) -> None:
    with new_store(path) as store:
        store.record(mixed_trials())
        out = store.export(tmp_path / "trials.csv", "csv")
    rows = read_csv(out)
    assert rows[0] == [
        "trial_id",
        "layer",
        "model",
        "robust",
        "training_seed",
        "x",
        "x_name",
        "seed",
        "accuracy_loss",
        "err_clean",
        "err_faulty",
        "errors_robust",
        "examples",
        "flips",
        "rerr",
        "wall_s",
        "package_version",
        "torch_version",
        "device",
        "finished_at",
    ]
    assert [row[0] for row in rows[1:]] == sorted(r.trial_id for r in mixed_trials())
    by_id = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert (
        by_id["00000000000000ff"]["err_clean"] == "" and by_id["00000000000000ff"]["layer"] == "2"
    )
    assert by_id["0000000000000002"]["rerr"] == "" and by_id["0000000000000002"]["x"] == "0.02"
    assert by_id["000000000000000b"]["errors_robust"] == "3,4"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # Equal contents give equal bytes, whatever the order of recording.
    other = tmp_path / "other.db"
    with new_store(other) as store:
        store.record(mixed_trials()[::-1])
        again = store.export(tmp_path / "again.csv", "csv")
    assert again.read_bytes() == out.read_bytes()


def test_export_takes_the_planned_trials_when_there_is_a_plan(path: Path, tmp_path: Path) -> None:
    with new_store(path) as store:
        store.record(mixed_trials())
        store.set_planned(["0000000000000002", "00000000000000ff", "0000000000000099"])
        rows = read_csv(store.export(tmp_path / "planned.csv", "csv"))
    assert [row[0] for row in rows[1:]] == ["0000000000000002", "00000000000000ff"]


def test_export_parquet_holds_what_csv_holds(path: Path, tmp_path: Path) -> None:
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    with new_store(path) as store:
        store.record(mixed_trials())
        rows = read_csv(store.export(tmp_path / "trials.csv", "csv"))
        table = pyarrow_parquet.read_table(store.export(tmp_path / "trials.parquet", "parquet"))
    assert table.column_names == rows[0]
    assert str(table.schema.field("flips").type) == "int64"
    assert str(table.schema.field("err_faulty").type) == "double"
    as_text = [["" if v is None else str(v) for v in row.values()] for row in table.to_pylist()]
    assert as_text == rows[1:]


def test_parquet_export_without_pyarrow_says_how_to_get_it(
    path: Path, tmp_path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with new_store(path) as store, pytest.raises(BitrobustError) as caught:
        store.export(tmp_path / "t.parquet", "parquet")
    assert str(caught.value) == "parquet export needs pyarrow: pip install bitrobust[parquet]"
    assert not (tmp_path / "t.parquet").exists()


def test_an_unknown_export_format_is_refused(path: Path, tmp_path: Path) -> None:
    with (
        new_store(path) as store,
        pytest.raises(BitrobustError, match="unknown export format 'xlsx'"),
    ):
        store.export(tmp_path / "t.xlsx", "xlsx")
    assert not (tmp_path / "t.xlsx").exists()


def test_export_into_a_missing_folder_is_a_clear_error(path: Path, tmp_path: Path) -> None:
    with new_store(path) as store, pytest.raises(BitrobustError, match="cannot write"):
        store.export(tmp_path / "missing" / "t.csv", "csv")
