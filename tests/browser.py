"""Headless Chromium for the tests: find it, take a screenshot of a page, dump a page's DOM.

Each call starts a fresh browser with its own throw-away profile, no sandbox (tests may run as
root in a container), no GPU and no background network traffic. When Chromium is missing,
:func:`require_chromium` skips the test, or fails it where the environment variable ``CI`` is
set (CI installs Chromium, so a missing browser there is a broken setup, not a reason to skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
TIMEOUT_S = 60


def find_chromium() -> str | None:
    """``$BITROBUST_CHROMIUM``, else the first of :data:`NAMES` on the PATH, else None."""
    chosen = os.environ.get("BITROBUST_CHROMIUM")
    if chosen:
        return chosen
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def require_chromium() -> str:
    """The Chromium executable; skips the test without one (fails it under CI)."""
    found = find_chromium()
    if found is None:
        message = (
            "headless Chromium not found (looked for " + ", ".join(NAMES) + "; install Debian's "
            "`chromium` package, or set BITROBUST_CHROMIUM)"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must render the report in a browser")
        pytest.skip(message)
    return found


def run_chromium(chromium: str, *args: str, timeout: float = TIMEOUT_S) -> str:
    """Run Chromium with :data:`FLAGS`, a fresh profile and ``args``; return its stdout.

    Fails the test (with Chromium's stderr) on a non-zero exit or after ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"Chromium did not finish within {timeout} s: {' '.join(command)}\n{error}")
    if result.returncode != 0:
        pytest.fail(f"Chromium exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def screenshot(chromium: str, page: Path, png: Path, width: int, height: int) -> Path:
    """A ``width`` × ``height`` PNG of the top of ``page`` (a local file) at ``png``."""
    run_chromium(
        chromium,
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        page.resolve().as_uri(),
    )
    return png


def dump_dom(chromium: str, page: Path, budget_ms: int = 5000) -> str:
    """The DOM of ``page`` (a local file) as HTML, after its load event and scripts ran."""
    return run_chromium(
        chromium, "--dump-dom", f"--virtual-time-budget={budget_ms}", page.resolve().as_uri()
    )
