"""The studies' campaign specs, shipped in ``experiments/specs/``, and running one into a folder.

A study (the demo, a paper's reproduction) is a campaign spec plus a paper-specific report. It
runs into ``<out-dir>/campaign.db`` with its trained models in ``<out-dir>/checkpoints/``, so a
rerun continues where a killed one stopped and a changed spec retrains and re-evaluates only
what it changes (trial ids and checkpoint names are content hashes; nothing is cached by file
name). The report reads the store's rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bitrobust.campaign.executors import make_executor
from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.spec import CampaignSpec, parse_spec
from bitrobust.campaign.store import CampaignStore
from bitrobust.errors import BitrobustError

SPECS = Path(__file__).resolve().parent / "specs"
STORE_NAME = "campaign.db"


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
    trials whose ids the new plan contains are kept."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_NAME
    with make_executor(executor, workers, address) as runner:
        summary = run_campaign(
            spec,
            text,
            store,
            runner,
            data_dir=data_dir,
            checkpoint_dir=out / "checkpoints",
            force=True,
        )
    if summary.interrupted:
        raise KeyboardInterrupt
    with CampaignStore.open_existing(store) as opened:
        return [record.flat() for record in opened.records(planned_only=True)]
