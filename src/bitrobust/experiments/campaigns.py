"""The studies' campaign specs, shipped in ``experiments/specs/``, and running one into a folder.

A study (the demo, a paper's reproduction) is a campaign spec plus a paper-specific report. It
runs into ``<out-dir>/campaign.db`` with its trained models in ``<out-dir>/checkpoints/``, so a
rerun continues where a killed one stopped and a changed spec retrains and re-evaluates only
what it changes (trial ids and checkpoint names are content hashes; nothing is cached by file
name). The report reads the store's rows.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bitrobust.campaign.executors import make_executor
from bitrobust.campaign.runner import run_campaign, stop_on_signals
from bitrobust.campaign.spec import CampaignSpec, parse_spec
from bitrobust.campaign.store import CampaignStore
from bitrobust.errors import BitrobustError

SPECS = Path(__file__).resolve().parent / "specs"
STORE_NAME = "campaign.db"
TRIALS_NAME = "trials.csv.gz"
"""Every trial of a study as one CSV row (``campaign export``), gzipped: what
``bitrobust claims`` reads from the committed results."""


def packaged_spec(name: str) -> tuple[CampaignSpec, str]:
    """The spec ``specs/<name>.toml`` and its text."""
    path = SPECS / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPECS.glob("*.toml")))
        raise BitrobustError(f"no packaged spec {name!r} (known: {known})")
    text = path.read_text()
    return parse_spec(text, f"spec {path.name}"), text


def run_study_spec(
    spec: CampaignSpec,
    text: str,
    out_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = 1,
    executor: str = "local",
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec`` into ``out_dir`` (resumable) and return its rows (one flat dict per trial,
    sorted by trial id). A store made from an earlier version of the spec is reused: its
    trials whose ids the new plan contains are kept. SIGINT or SIGTERM once finishes the work
    in flight and raises KeyboardInterrupt (twice abandons it), as ``campaign run`` does."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_NAME
    with (
        make_executor(executor, workers, address) as runner,
        stop_on_signals(getattr(runner, "abandon", None)) as stop,
    ):
        summary = run_campaign(
            spec,
            text,
            store,
            runner,
            data_dir=data_dir,
            checkpoint_dir=out / "checkpoints",
            force=True,
            stop=stop,
        )
    if summary.interrupted:
        raise KeyboardInterrupt
    export_trials(store, out / TRIALS_NAME)
    with CampaignStore.open_existing(store) as opened:
        return [record.flat() for record in opened.records(planned_only=True)]


def provenance_line(provenance: dict[str, str]) -> str:
    """The Markdown line that says which code made a study's results."""
    return (
        f"Code: bitrobust {provenance['bitrobust']}, code fingerprint `{provenance['code']}` "
        "(`bitrobust.provenance.code_fingerprint()` of the package sources); every trial row "
        "also records the package and torch version it ran with."
    )


def export_trials(store: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Write the store's planned trials to ``path`` as gzipped CSV, sorted by trial id; the
    gzip header carries no time stamp, so equal trials give equal bytes."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        plain = Path(scratch) / "trials.csv"
        with CampaignStore.open_existing(store) as opened:
            opened.export(plain, "csv")
        packed = Path(scratch) / path.name
        with (
            open(plain, "rb") as source,
            open(packed, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as target,
        ):
            shutil.copyfileobj(source, target)
        os.replace(packed, path)
    return path
