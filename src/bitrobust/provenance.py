"""Where a result came from: the package version and a fingerprint of the code that made it.

A committed result re-runs to the same numbers from the same code; recording
:func:`code_fingerprint` beside it says which code that is, also outside a git checkout
(an installed wheel, a copied tree).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


def code_fingerprint(root: Path = PACKAGE_ROOT) -> str:
    """A 16-hex-digit SHA-256 of the package's Python sources (relative paths and contents,
    in sorted order): equal for the same code on any machine."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def provenance() -> dict[str, str]:
    """``{"bitrobust": version, "code": fingerprint}`` for a result's record."""
    from bitrobust import __version__

    return {"bitrobust": __version__, "code": code_fingerprint()}
