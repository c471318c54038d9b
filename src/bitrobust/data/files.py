"""Files on disk: the errors they raise, md5 verification with an in-process cache, downloads.

Downloads go through :func:`urlopen` looked up at call time, so tests replace it with
``monkeypatch.setattr(bitrobust.data.files, "urlopen", fake)`` and never touch the network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.request import urlopen

from bitrobust.errors import BitrobustError

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

HOW_TO_FIX = "set --data-dir or BITROBUST_DATA_DIR to a folder that holds the files"


class DatasetUnavailable(BitrobustError):
    """The dataset files are missing here and could not be downloaded."""


class CorruptDataset(BitrobustError):
    """A dataset file exists but is damaged: wrong checksum, truncated, or malformed."""


# (absolute path, size, mtime_ns) -> md5 hex digest of a file already checked in this process.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.absolute()), st.st_size, st.st_mtime_ns)


def verify_md5(path: Path, md5: str) -> None:
    """Check that ``path`` has the md5 ``md5`` (streamed; cached like :func:`read_verified`)."""
    try:
        key = _stat_key(path)
        if _VERIFIED.get(key) == md5:
            return
        digest = hashlib.md5()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    if digest.hexdigest() != md5:
        raise CorruptDataset(
            f"{path} has md5 {digest.hexdigest()}, expected {md5} (corrupt or not the original "
            "file); delete it to download it again"
        )
    _VERIFIED[key] = md5


def read_verified(path: Path, md5: str) -> bytes:
    """Return the bytes of ``path`` after checking they have the md5 ``md5``.

    A file already verified in this process (same path, size and modification time) is not
    hashed again. ``shared/data`` is read-only, so the cache lives in memory, not in stamp files.
    """
    try:
        key = _stat_key(path)
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    if _VERIFIED.get(key) != md5:
        actual = hashlib.md5(data).hexdigest()
        if actual != md5:
            raise CorruptDataset(
                f"{path} has md5 {actual}, expected {md5} (corrupt or not the original file); "
                "delete it to download it again"
            )
        _VERIFIED[key] = md5
    return data


def download(urls: Sequence[str], dest: Path, md5: str, *, what: str) -> None:
    """Download the first of ``urls`` that yields a file with md5 ``md5`` to ``dest``.

    The file is written to a temporary name in ``dest``'s folder and renamed only after its md5
    matched, so an interrupted download never leaves a half file under the real name.
    Raises :class:`DatasetUnavailable` naming ``dest`` if every URL fails (e.g. offline).
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetUnavailable(
            f"{what}: {dest.name} is missing and {dest.parent} cannot be created to download it "
            f"({exc.strerror or exc}); {HOW_TO_FIX}"
        ) from None
    failures = []
    for url in urls:
        try:
            _download_one(url, dest, md5)
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
            failures.append(f"{url}: {exc}")
    raise DatasetUnavailable(
        f"{what}: {dest.name} is missing in {dest.parent} and the download failed "
        f"({'; '.join(failures)}); put the file there, or {HOW_TO_FIX}"
    )


def _download_one(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` into ``dest`` via a temporary file; raise OSError/ValueError on failure."""
    request = urllib.request.Request(url, headers={"User-Agent": "bitrobust"})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"downloaded file has md5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
        _VERIFIED[_stat_key(dest)] = md5
    finally:
        tmp.unlink(missing_ok=True)
