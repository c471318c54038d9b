"""Read CIFAR-10 (python version) from its ``.tar.gz`` archive or from the extracted folder.

Each batch is a protocol-2 pickle of a dict with byte-string keys: ``b"data"`` a uint8 array
(N, 3072) holding per image 1024 red, then 1024 green, then 1024 blue values (row-major 32x32),
and ``b"labels"`` a list of N ints 0..9. ``batches.meta`` holds ``b"label_names"``.

Pickles can run arbitrary code, so they are loaded with :class:`BatchUnpickler`, which only
resolves the few globals that rebuild numpy arrays and byte strings. Every batch's structure is
checked on every load, whatever the file's checksum: the official download, the project's
rebuilt archive (other checksums) and small test copies all load, and malformed files fail with
a message naming the file. (Checksums are still checked for downloads, see ``files.download``.)
"""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bitrobust.data.catalog import (
    CIFAR10_META,
    CIFAR10_TEST_BATCHES,
    CIFAR10_TRAIN_BATCHES,
    dataset_info,
)
from bitrobust.data.files import CorruptDataset, DatasetUnavailable


def _import_first(*module_names: str) -> Any:
    """Import the first importable of ``module_names`` (numpy 2 renamed numpy.core to _core)."""
    for module_name in module_names[:-1]:
        try:
            return importlib.import_module(module_name)
        except ImportError:
            continue
    return importlib.import_module(module_names[-1])


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle bytes with protocol 2, latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals a CIFAR-10 batch may name: what rebuilds numpy arrays, and nothing else."""
    multiarray = _import_first("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _import_first("numpy._core.numeric", "numpy.core.numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # bytes in pickles written by Python 3
    }
    for core in ("numpy.core", "numpy._core"):  # pickles name whichever numpy wrote them
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar  # numpy integer labels
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol-5 arrays
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()
_BATCHES = {"train": CIFAR10_TRAIN_BATCHES, "test": CIFAR10_TEST_BATCHES}


class BatchUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals needed to rebuild arrays."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise CorruptDataset(
                f"{self.source} refers to {module}.{name}; a CIFAR-10 batch only holds numpy "
                "arrays and lists, so it was not loaded (untrusted or wrong file)"
            )
        return _ALLOWED_GLOBALS[(module, name)]


def unpickle(raw: bytes, source: str) -> Any:
    """Unpickle ``raw`` with :class:`BatchUnpickler`, turning any failure into CorruptDataset."""
    try:
        return BatchUnpickler(io.BytesIO(raw), source).load()
    except CorruptDataset:
        raise
    except Exception as exc:  # malformed pickles raise many kinds of errors
        raise CorruptDataset(f"{source} is not a valid pickle ({exc!r})") from None


def check_batch(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate an unpickled data batch; return images (N, 3, 32, 32) uint8, labels (N,) int64."""
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise CorruptDataset(f"{source} is not a CIFAR-10 batch (no b'data'/b'labels' entries)")
    data, labels = obj[b"data"], obj[b"labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or data.shape[0] == 0
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptDataset(f"{source}: data is {desc}, expected uint8 (N, 3072)")
    try:
        labels = np.asarray(labels)
    except Exception:  # ragged or exotic objects
        labels = np.asarray([None])
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise CorruptDataset(
            f"{source}: expected {data.shape[0]} integer labels, got {labels.dtype} {labels.shape}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise CorruptDataset(
            f"{source}: labels must be in 0..9, found {labels.min()}..{labels.max()}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def check_meta(obj: Any, source: str) -> None:
    """Check that ``batches.meta`` lists the ten CIFAR-10 class names in order."""
    names = obj.get(b"label_names") if isinstance(obj, dict) else None
    expected = list(dataset_info("cifar10").classes)
    try:
        decoded = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception:
        decoded = None
    if decoded != expected:
        raise CorruptDataset(
            f"{source}: label_names are {decoded!r}, expected the CIFAR-10 classes {expected}"
        )


def read_members(source: Path, names: Iterable[str]) -> dict[str, bytes]:
    """Return the raw bytes of batch files ``names`` from a folder or a ``.tar.gz`` archive.

    Archives are read as a stream (no extraction, no seeking) and only the wanted members are
    kept: any regular member whose last path component is one of ``names`` counts.
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    if source.is_dir():
        for name in sorted(wanted):
            try:
                found[name] = (source / name).read_bytes()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise DatasetUnavailable(f"cannot read {source / name}: {exc.strerror}") from None
    else:
        try:
            with tarfile.open(source, mode="r|*") as archive:
                for member in archive:
                    name = PurePosixPath(member.name).name
                    if member.isfile() and name in wanted and name not in found:
                        found[name] = archive.extractfile(member).read()
                        if len(found) == len(wanted):
                            break
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise CorruptDataset(
                f"{source} is not a readable .tar.gz archive ({exc}); delete it to download "
                "it again"
            ) from None
    missing = sorted(wanted - set(found))
    if missing:
        raise CorruptDataset(f"{source} lacks {', '.join(missing)} (incomplete CIFAR-10 copy)")
    return found


def read_cifar10(source: Path, splits: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and validate ``splits`` from ``source`` (folder or archive) in one pass.

    Returns per split the images (N, 3, 32, 32) uint8 and labels (N,) int64, batches in order.
    """
    batch_names = {split: _BATCHES[split] for split in splits}
    members = [name for names in batch_names.values() for name in names]
    raw = read_members(source, (CIFAR10_META, *members))
    where = _describe(source, CIFAR10_META)
    check_meta(unpickle(raw.pop(CIFAR10_META), where), where)
    result = {}
    for split, names in batch_names.items():
        images, labels = [], []
        for name in names:
            where = _describe(source, name)
            x, y = check_batch(unpickle(raw.pop(name), where), where)
            images.append(x)
            labels.append(y)
        result[split] = (np.concatenate(images), np.concatenate(labels))
    return result


def _describe(source: Path, member: str) -> str:
    """Name a batch file in messages: ``folder/member`` or ``archive.tar.gz:member``."""
    return str(source / member) if source.is_dir() else f"{source}:{member}"
