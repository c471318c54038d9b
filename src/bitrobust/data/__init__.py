"""Datasets as tensors: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's 8x8 digits.

    train, test = load_splits("mnist")     # TensorDatasets of (images, labels)
    info = dataset_info("cifar10")         # channels, size, classes, mean/std

Images are float32 (N, C, H, W) in [0, 1]; labels are int64 (N,). Files are looked up under the
data folder (:func:`resolve_data_dir`)::

    <data_dir>/mnist/          train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                               t10k-images-idx3-ubyte.gz,  t10k-labels-idx1-ubyte.gz
    <data_dir>/fashion-mnist/  the same four names
    <data_dir>/cifar10/cifar-10-batches-py/   or <data_dir>/cifar-10-batches-py/   (extracted)
    <data_dir>/cifar10/cifar-10-python.tar.gz                                       (archive)
    <data_dir>/evoapprox/      EvoApproxLib product tables (:func:`evoapprox_dir`, read by
                               :mod:`bitrobust.hw.catalogue`)

MNIST-style files must have their published md5. Missing files are downloaded from the
official sources when ``download=True``; offline, a :class:`DatasetUnavailable` error says where
the files were expected. ``digits`` ships with scikit-learn and needs no files at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bitrobust.data import cifar, files, idx
from bitrobust.data.catalog import (
    CIFAR10_ARCHIVE,
    CIFAR10_FOLDER,
    CIFAR10_MD5,
    CIFAR10_SIZE,
    CIFAR10_URL,
    DATASETS,
    IDX_FILES,
    IDX_MIRRORS,
    SPLITS,
    DatasetInfo,
    canonical_name,
    check_split,
    dataset_info,
)
from bitrobust.data.files import HOW_TO_FIX, CorruptDataset, DatasetUnavailable
from bitrobust.errors import BitrobustError

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DIGITS_TRAIN_SIZE",
    "CorruptDataset",
    "DatasetInfo",
    "DatasetUnavailable",
    "dataset_info",
    "evoapprox_dir",
    "load_dataset",
    "load_splits",
    "resolve_data_dir",
    "subset",
]

DATA_DIR_ENV = "BITROBUST_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/bitrobust/data"
EVOAPPROX_FOLDER = "evoapprox"
# scikit-learn's digits: the first 1500 images train, the remaining 297 test (fixed, no RNG).
DIGITS_TRAIN_SIZE = 1500


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data folder: ``data_dir`` if given, else $BITROBUST_DATA_DIR, else the cache.

    The path is made absolute (so messages are unambiguous) but need not exist.
    """
    if data_dir is None or os.fspath(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(os.path.abspath(os.path.expanduser(os.fspath(data_dir))))


def evoapprox_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<data_dir>/evoapprox``, the EvoApproxLib tables' folder: what the CLI and the studies
    pass to :func:`bitrobust.hw.catalogue.load_multiplier` (``hw`` knows no data folder)."""
    return resolve_data_dir(data_dir) / EVOAPPROX_FOLDER


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> TensorDataset:
    """Load one split (``"train"`` or ``"test"``) of dataset ``name`` as a TensorDataset.

    Raises BitrobustError (DatasetUnavailable, CorruptDataset) for unknown names, missing
    files that cannot be downloaded, and damaged files.
    """
    return _load(name, (split,), data_dir, download)[split]


def load_splits(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[TensorDataset, TensorDataset]:
    """Load ``(train, test)`` of dataset ``name``; CIFAR-10 is read in a single pass."""
    loaded = _load(name, SPLITS, data_dir, download)
    return loaded["train"], loaded["test"]


def _load(
    name: str, splits: tuple[str, ...], data_dir: str | os.PathLike[str] | None, download: bool
) -> dict[str, TensorDataset]:
    name = canonical_name(name)
    for split in splits:
        check_split(split)
    if name == "digits":
        return {split: _digits(split) for split in splits}
    root = resolve_data_dir(data_dir)
    if name == "cifar10":
        source = _cifar10_source(root, download)
        arrays = cifar.read_cifar10(source, splits)
        return {split: _to_dataset(*arrays[split]) for split in splits}
    return {split: _idx_split(name, root, split, download) for split in splits}


def _to_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """Wrap uint8 images (N, C, H, W) and integer labels as float32 [0, 1] / int64 tensors."""
    pixels = images.astype(np.float32)
    pixels /= 255.0
    return TensorDataset(torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64)))


def _idx_split(name: str, root: Path, split: str, download: bool) -> TensorDataset:
    """Load one split of MNIST or Fashion-MNIST from ``root/name``, downloading if allowed."""
    folder = root / name
    paths, raws = [], []
    for entry in IDX_FILES[name][split]:
        path = folder / entry.filename
        if not path.exists():
            if not download:
                raise DatasetUnavailable(
                    f"{name}: {entry.filename} not found in {folder} (download disabled); "
                    f"put the original file there, or {HOW_TO_FIX}"
                )
            urls = [mirror + entry.filename for mirror in IDX_MIRRORS[name]]
            files.download(urls, path, entry.md5, what=name)
        paths.append(path)
        raws.append(files.read_verified(path, entry.md5))
    images, labels = idx.read_images_and_labels(raws[0], raws[1], str(paths[0]), str(paths[1]))
    return _to_dataset(images[:, None], labels)


def _cifar10_source(root: Path, download: bool) -> Path:
    """Return the first CIFAR-10 copy found under ``root``; download the archive if allowed."""
    archive = root / "cifar10" / CIFAR10_ARCHIVE
    candidates = (root / "cifar10" / CIFAR10_FOLDER, root / CIFAR10_FOLDER, archive)
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_size == CIFAR10_SIZE:
            files.verify_md5(candidate, CIFAR10_MD5)  # the official download: checksum it
        if candidate.exists():
            return candidate
    if not download:
        looked = ", ".join(str(c) for c in candidates)
        raise DatasetUnavailable(
            f"cifar10: no copy found (looked for {looked}; download disabled); {HOW_TO_FIX}"
        )
    files.download((CIFAR10_URL,), archive, CIFAR10_MD5, what="cifar10")
    return archive


def _digits(split: str) -> TensorDataset:
    """scikit-learn's 1797 8x8 digits (values 0..16, scaled to [0, 1]), split at 1500."""
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn loads slowly

    bunch = load_digits()
    rows = slice(None, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    images = (bunch.images[rows] / 16.0).astype(np.float32)[:, None]
    labels = bunch.target[rows].astype(np.int64)
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


def subset(dataset: TensorDataset, limit: int | None) -> TensorDataset:
    """The first ``limit`` examples of an in-memory dataset (all of it when ``limit`` is None)."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 0:
        raise BitrobustError(f"a limit on the number of examples must be >= 0, got {limit}")
    return TensorDataset(*(tensor[:limit] for tensor in dataset.tensors))
