"""The persistent store of a campaign's trial results: one SQLite file in WAL mode.

Only the parent process of a campaign run writes (workers hand their results back to it); any
number of readers (``campaign status``, ``export``, ``report``) may read at the same time, as
WAL allows. Schema (format :data:`STORE_FORMAT`)::

    meta    (key TEXT PRIMARY KEY, value TEXT)  -- format, spec_hash, spec_text, created_at,
                                                --   package_version, and anything set_meta adds
    planned (trial_id TEXT PRIMARY KEY)         -- the trials the current plan asks for
    trials  (trial_id TEXT PRIMARY KEY,         -- finished trials, never recorded twice
             seed INTEGER, params TEXT, metrics TEXT,   -- params, metrics: JSON objects
             wall_s REAL, package_version TEXT, torch_version TEXT, device TEXT,
             finished_at REAL)                  -- unix time

Trial ids are content addressed, so a finished row stays valid for any plan that names its id.

Durability: ``synchronous=NORMAL``. In WAL mode every commit is in the WAL before ``record``
returns, so a crashed or SIGKILLed run loses nothing it recorded; only a power loss or OS
crash can drop the last few commits, and never corrupts the file. A lost trial is simply run
again on resume, which is cheaper than an fsync per recorded batch (``FULL``) on every run.

A writer (:meth:`CampaignStore.create_or_open`) holds an exclusive ``flock`` on the sidecar
``PATH.lock`` (which holds its pid) for its lifetime: the kernel drops it when the process
dies, even by SIGKILL, and forked children do not inherit it. Readers take no lock and open
the file with ``mode=ro`` (a store in a read-only folder, where SQLite cannot make its -shm
file, is read as immutable: nobody can be writing into it).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bitrobust import __version__
from bitrobust.errors import BitrobustError

log = logging.getLogger(__name__)

STORE_FORMAT = 1  # schema version, stored in meta
BUSY_TIMEOUT_S = 10.0
PROVENANCE_COLUMNS = ("wall_s", "package_version", "torch_version", "device", "finished_at")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE planned (trial_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE trials (
    trial_id TEXT PRIMARY KEY,
    seed INTEGER NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    wall_s REAL NOT NULL,
    package_version TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    device TEXT NOT NULL,
    finished_at REAL NOT NULL
);
"""
_TRIAL_COLUMNS = "trial_id, seed, params, metrics, " + ", ".join(PROVENANCE_COLUMNS)

# Lock fds this process holds; a forked child closes its copies so that it cannot keep a
# campaign's lock alive after the parent dies.
_HELD_LOCK_FDS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCK_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: what was run (params, seed), what it measured, and where."""

    trial_id: str
    params: dict[str, Any]
    seed: int
    metrics: dict[str, Any]
    wall_s: float
    package_version: str
    torch_version: str
    device: str
    finished_at: float

    def flat(self) -> dict[str, Any]:
        """One flat row: trial_id, params, seed, metrics, then the provenance columns."""
        return {
            "trial_id": self.trial_id,
            **self.params,
            "seed": self.seed,
            **self.metrics,
            **{name: getattr(self, name) for name in PROVENANCE_COLUMNS},
        }


class CampaignStore:
    """A campaign's SQLite store; use :meth:`create_or_open` to write, :meth:`open_existing`
    to read."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._owner_pid = os.getpid()

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create_or_open(
        cls, path: str | os.PathLike[str], spec_hash: str, spec_text: str, *, force: bool = False
    ) -> CampaignStore:
        """Open the store at ``path`` for a campaign run, creating it if needed, and take the
        run lock. A store made from another spec is refused unless ``force`` (then its spec is
        replaced and its trial rows kept: a row whose id the new plan names is a valid result)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BitrobustError(
                f"store {path}: cannot create its folder: {exc.strerror}"
            ) from None
        if not _writable(path):
            raise BitrobustError(f"store {path} is read-only")
        lock_fd = _take_run_lock(path)
        try:
            store = cls(path, _open_for_writing(path, spec_hash, spec_text, force), lock_fd)
        except BaseException:
            _release_run_lock(path, lock_fd)
            raise
        return store

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> CampaignStore:
        """Open an existing store read-only, without the run lock: it works on a read-only
        file or folder and while a campaign run is writing into the store."""
        path = Path(path)
        if not path.is_file():
            raise BitrobustError(f"store {path} does not exist")
        return cls(path, _open_read_only(path), None)

    # -- reading -------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """All meta rows as a dict."""
        return _read_meta(self._conn, self.path)

    def planned_ids(self) -> set[str]:
        """The ids of the current plan."""
        return self._ids("SELECT trial_id FROM planned")

    def done_ids(self) -> set[str]:
        """The ids of all recorded trials, planned or not."""
        return self._ids("SELECT trial_id FROM trials")

    def records(self, planned_only: bool = False) -> list[TrialRecord]:
        """Recorded trials sorted by id; with ``planned_only``, only those in the plan."""
        sql = f"SELECT {_TRIAL_COLUMNS} FROM trials"
        if planned_only:
            sql += " WHERE trial_id IN (SELECT trial_id FROM planned)"
        with self._translate("read trials"):
            rows = self._conn.execute(sql + " ORDER BY trial_id").fetchall()
        return [
            TrialRecord(
                trial_id=row[0],
                seed=row[1],
                params=json.loads(row[2]),
                metrics=json.loads(row[3]),
                wall_s=row[4],
                package_version=row[5],
                torch_version=row[6],
                device=row[7],
                finished_at=row[8],
            )
            for row in rows
        ]

    def status(self) -> dict[str, Any]:
        """Progress: ``total`` planned, ``done`` of them, ``pending``, ``other`` (recorded but
        not planned), ``spec_hash``, and ``name`` when the meta has one."""
        planned, done = self.planned_ids(), self.done_ids()
        meta = self.meta()
        result: dict[str, Any] = {"spec_hash": meta.get("spec_hash", "")}
        if "name" in meta:
            result["name"] = meta["name"]
        finished = len(planned & done)
        result.update(
            total=len(planned),
            done=finished,
            pending=len(planned) - finished,
            other=len(done - planned),
        )
        return result

    def export(self, path: str | os.PathLike[str], fmt: str) -> Path:
        """Write one row per trial (the planned ones if there is a plan, else all), sorted by
        id, as ``csv`` or ``parquet``; atomically (temp file, then rename). Returns the path."""
        path = Path(path)
        if fmt not in ("csv", "parquet"):
            raise BitrobustError(f"unknown export format {fmt!r}: use csv or parquet")
        if fmt == "parquet":
            try:
                import pyarrow
                import pyarrow.parquet
            except ImportError:
                raise BitrobustError(
                    "parquet export needs pyarrow: pip install bitrobust[parquet]"
                ) from None
        records = self.records(planned_only=bool(self.planned_ids()))
        columns = _export_columns(records)
        rows = [record.flat() for record in records]
        with _atomic_output(path) as tmp:
            if fmt == "csv":
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle, lineterminator="\n")
                    writer.writerow(columns)
                    for row in rows:
                        writer.writerow([_csv_text(row.get(name)) for name in columns])
            else:
                arrays = [_arrow_column([row.get(name) for row in rows]) for name in columns]
                table = pyarrow.Table.from_arrays(arrays, names=columns)
                pyarrow.parquet.write_table(table, tmp)
        log.debug("exported %d trials from %s to %s", len(rows), self.path, path)
        return path

    # -- writing -------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        """Set one meta row."""
        with self._transaction(f"set meta {key!r}") as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def set_planned(self, trial_ids: Iterable[str]) -> None:
        """Replace the plan by ``trial_ids``, in one transaction."""
        with self._transaction("set the plan") as conn:
            conn.execute("DELETE FROM planned")
            conn.executemany(
                "INSERT OR IGNORE INTO planned (trial_id) VALUES (?)", ((i,) for i in trial_ids)
            )

    def add_planned(self, trial_ids: Iterable[str]) -> None:
        """Add ``trial_ids`` to the plan (ids already in it are kept once)."""
        with self._transaction("extend the plan") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO planned (trial_id) VALUES (?)", ((i,) for i in trial_ids)
            )

    def record(self, records: Sequence[TrialRecord]) -> int:
        """Write finished trials in one transaction (all or none); a trial already recorded is
        kept as it was. Returns how many were new."""
        if not records:
            return 0
        added = 0
        with self._transaction(f"record {len(records)} trials") as conn:
            for rec in records:
                cursor = conn.execute(
                    f"INSERT OR IGNORE INTO trials ({_TRIAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        rec.trial_id,
                        rec.seed,
                        _to_json(rec.params, rec.trial_id, "params"),
                        _to_json(rec.metrics, rec.trial_id, "metrics"),
                        *(getattr(rec, name) for name in PROVENANCE_COLUMNS),
                    ),
                )
                added += cursor.rowcount
        return added

    def close(self) -> None:
        """Close the database and release the run lock (idempotent). In a forked child this
        only forgets the parent's handles: closing them there could disturb the parent."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        lock_fd, self._lock_fd = self._lock_fd, None
        if conn is None or os.getpid() != self._owner_pid:
            return
        conn.close()
        if lock_fd is not None:
            _release_run_lock(self.path, lock_fd)

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "writer" if self._lock_fd is not None else "reader"
        return f"CampaignStore({str(self.path)!r}, {mode})"

    # -- helpers -------------------------------------------------------------------------------

    def _ids(self, sql: str) -> set[str]:
        with self._translate("read trial ids"):
            return {row[0] for row in self._conn.execute(sql)}

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn an sqlite3 error into a one-line BitrobustError naming the store."""
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is closed")
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(self.path, action, exc) from exc

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block succeeds, else rolled back."""
        if self._lock_fd is None:
            raise RuntimeError(f"store {self.path} was opened read-only (open_existing)")
        with self._translate(action), _write_transaction(self._conn, self.path) as conn:
            yield conn


# -- opening helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the block (or the commit) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # SQLite rolls a torn transaction back on reopen
                log.warning("store %s: rollback failed: %s", path, exc)
        raise


def _store_error(path: Path, action: str, exc: sqlite3.Error) -> BitrobustError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return BitrobustError(f"store {path} is locked by another process")
    if "readonly" in text or "read-only" in text:
        return BitrobustError(f"store {path} is read-only")
    return BitrobustError(f"store {path}: could not {action}: {text}")


def _writable(path: Path) -> bool:
    """Whether a writer can use ``path``: the file (and a WAL beside it) and its folder."""
    wal = Path(f"{path}-wal")
    return (
        os.access(path.parent, os.W_OK)
        and (not path.exists() or os.access(path, os.W_OK))
        and (not wal.exists() or os.access(wal, os.W_OK))
    )


def _take_run_lock(path: Path) -> int:
    """Lock ``PATH.lock`` exclusively (non-blocking) and write our pid into it; return its fd."""
    lock_path = Path(f"{path}.lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise BitrobustError(f"store {path} is read-only") from None
            raise BitrobustError(
                f"store {path}: cannot create {lock_path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BitrobustError(
                f"store {path} is in use by another campaign run (pid {holder})"
            ) from None
        # The previous holder may have unlinked the file between our open and our lock.
        try:
            same_file = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCK_FDS.add(fd)
    return fd


def _release_run_lock(path: Path, fd: int) -> None:
    """Remove ``PATH.lock`` while still holding it, then drop the lock."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}.lock")
    _HELD_LOCK_FDS.discard(fd)
    os.close(fd)


def _connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    return sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The meta table, after checking that ``conn`` is a bitrobust store we can read."""
    not_a_store = f"store {path} is not a bitrobust campaign store"
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise BitrobustError(f"store {path} is locked by another process") from None
        if "no such table" in text or "not a database" in text or "no such column" in text:
            raise BitrobustError(f"{not_a_store} ({text})") from None
        raise BitrobustError(f"store {path}: cannot read it: {text}") from None
    try:
        store_format = int(meta["format"])
    except (KeyError, ValueError):
        raise BitrobustError(f"{not_a_store} (its meta table has no format)") from None
    if store_format > STORE_FORMAT:
        raise BitrobustError(
            f"store {path} has format {store_format}, newer than this bitrobust "
            f"({__version__}) reads (format {STORE_FORMAT}); upgrade bitrobust"
        )
    return meta


def _check_sqlite_header(path: Path) -> None:
    with open(path, "rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise BitrobustError(f"store {path} is not a bitrobust campaign store (not SQLite)")


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing store, checked to be one."""
    _check_sqlite_header(path)
    uri = path.resolve().as_uri()
    conn = _connect(f"{uri}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc) or "readonly" in str(exc):
            # A WAL store in a read-only folder, without the -shm file a reader needs: nobody
            # can be writing into it, so it is safe to read as immutable.
            conn.close()
            conn = _connect(f"{uri}?immutable=1", uri=True)
    except sqlite3.DatabaseError:
        pass  # _read_meta reports it
    try:
        _read_meta(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_for_writing(
    path: Path, spec_hash: str, spec_text: str, force: bool
) -> sqlite3.Connection:
    """A writing connection; creates the store if the file is missing or empty. Called with
    the run lock held. A file that is not our store is checked read-only and never touched."""
    is_new = not path.exists() or path.stat().st_size == 0
    if not is_new:
        _open_read_only(path).close()  # refuses a file that is not a (readable) store
    conn = _connect(str(path))
    try:
        _prepare(conn, path, spec_hash, spec_text, force, is_new)
    except sqlite3.Error as exc:
        conn.close()
        raise _store_error(path, "open it", exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(
    conn: sqlite3.Connection, path: Path, spec_hash: str, spec_text: str, force: bool, is_new: bool
) -> None:
    """Set the connection up; create the schema or check the spec of an existing store."""
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise BitrobustError(f"store {path}: cannot switch it to WAL mode")
    conn.execute("PRAGMA synchronous = NORMAL")
    if is_new:
        meta = {
            "format": str(STORE_FORMAT),
            "spec_hash": spec_hash,
            "spec_text": spec_text,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__,
        }
        with _write_transaction(conn, path):
            # Statement by statement: executescript would commit our transaction early.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        log.info("created campaign store %s", path)
        return
    old_hash = _read_meta(conn, path).get("spec_hash", "unknown")
    if old_hash == spec_hash:
        log.info("opened campaign store %s", path)
        return
    if not force:
        raise BitrobustError(
            f"store {path} was made from another spec ({old_hash}, this one is {spec_hash}); "
            "rerun with --force to reuse it"
        )
    log.warning("store %s: replacing its spec %s by %s (--force)", path, old_hash, spec_hash)
    with _write_transaction(conn, path):
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("spec_hash", spec_hash), ("spec_text", spec_text)],
        )


# -- record and export helpers -------------------------------------------------------------------


def _to_json(values: dict[str, Any], trial_id: str, what: str) -> str:
    try:
        return json.dumps(values, default=_plain_scalar)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"trial {trial_id}: {what} are not JSON scalars: {exc}") from exc


def _plain_scalar(value: Any) -> Any:
    """A numpy or torch scalar as the Python scalar it holds (``json.dumps``'s default)."""
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            return item()
    raise TypeError(f"{type(value).__name__} is not a JSON scalar")


def _export_columns(records: Sequence[TrialRecord]) -> list[str]:
    """trial_id, params keys sorted, seed, metrics keys sorted, provenance (each name once)."""
    params = sorted({key for rec in records for key in rec.params})
    metrics = sorted({key for rec in records for key in rec.metrics})
    return list(dict.fromkeys(["trial_id", *params, "seed", *metrics, *PROVENANCE_COLUMNS]))


def _csv_text(value: Any) -> str:
    """A value as CSV text: empty for missing, repr-exact for floats."""
    if value is None:
        return ""
    return str(value)


def _arrow_column(values: list[Any]) -> Any:
    """A pyarrow array of ``values``; a column of mixed kinds becomes their CSV text."""
    import pyarrow

    try:
        return pyarrow.array(values)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):
        return pyarrow.array(
            [None if v is None else _csv_text(v) for v in values], pyarrow.string()
        )


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, else remove it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # honours umask
    except OSError as exc:
        raise BitrobustError(f"cannot write {path}: {exc.strerror}") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise BitrobustError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


__all__ = ["STORE_FORMAT", "CampaignStore", "TrialRecord"]
