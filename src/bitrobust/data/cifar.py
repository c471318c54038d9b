"""Read CIFAR-10 (python version) from its ``.tar.gz`` archive or from the extracted folder.

Each batch is a protocol-2 pickle of a dict with byte-string keys: ``b"data"`` a uint8 array
(N, 3072) holding per image 1024 red, then 1024 green, then 1024 blue values (row-major 32x32),
and ``b"labels"`` a list of N ints 0..9. ``batches.meta`` holds ``b"label_names"``.

Pickles can run arbitrary code, so they are loaded with :class:`BatchUnpickler`, which only
lets through the few numpy functions that rebuild an array. Every batch's structure is checked,
whatever its checksum: that is what makes any valid copy (official download, the project's
rebuild, a small test file) load and every malformed one fail with a clear message.
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


def _numpy_global(module_names: tuple[str, ...], name: str) -> Any:
    """Return ``name`` from the first of ``module_names`` importable with this numpy version."""
    for module_name in module_names:
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {module_names}")


# numpy >= 2 moved numpy.core to numpy._core; pickles written by either version name either one.
_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
_ALLOWED_GLOBALS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("numpy", "ndarray"): (("numpy",), "ndarray"),
    ("numpy", "dtype"): (("numpy",), "dtype"),
    **{(m, "_reconstruct"): (_MULTIARRAY, "_reconstruct") for m in _MULTIARRAY},
    **{(m, "scalar"): (_MULTIARRAY, "scalar") for m in _MULTIARRAY},  # numpy integer labels
    **{(m, "_frombuffer"): (_NUMERIC, "_frombuffer") for m in _NUMERIC},  # protocol-5 arrays
}


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
        return _numpy_global(*_ALLOWED_GLOBALS[(module, name)])


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
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32 or data.shape[0] == 0:
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
