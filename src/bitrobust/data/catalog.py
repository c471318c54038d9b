"""What each dataset is: shape, class names, normalisation constants, files and checksums.

Everything here is a constant, so other modules (models, CLI, reports) can ask about a dataset
without reading any file.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitrobust.errors import BitrobustError

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits")

SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as :func:`bitrobust.data.load_dataset` returns it.

    ``mean`` and ``std`` are per-channel statistics of the training images scaled to [0, 1],
    for input normalisation in models.
    """

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


_DIGIT_NAMES = tuple(str(d) for d in range(10))

# mean/std were computed over the training split returned by load_dataset (float64, then rounded).
_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 1, 28, 10, mean=(0.1307,), std=(0.3081,), classes=_DIGIT_NAMES),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        1,
        28,
        10,
        mean=(0.2860,),
        std=(0.3530,),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        3,
        32,
        10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
    ),
    "digits": DatasetInfo("digits", 1, 8, 10, mean=(0.3051,), std=(0.3750,), classes=_DIGIT_NAMES),
}

# Spellings people commonly type, mapped to the canonical name.
_ALIASES = {
    "fashion": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar": "cifar10",
    "cifar-10": "cifar10",
    "fashionmnist": "fashion-mnist",
}


def canonical_name(name: str) -> str:
    """Return the canonical dataset name for ``name`` (case and ``_``/``-`` insensitive)."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _INFO:
        raise BitrobustError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise."""
    if split not in SPLITS:
        raise BitrobustError(f"unknown split {split!r}; choose 'train' or 'test'")
    return split


def dataset_info(name: str) -> DatasetInfo:
    """Return the static :class:`DatasetInfo` of dataset ``name``."""
    return _INFO[canonical_name(name)]


# --- Files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdxFile:
    """One gzip-compressed IDX file of MNIST or Fashion-MNIST, with its published md5."""

    filename: str
    md5: str


# (images, labels) per split; md5 values are those of the original published files.
IDX_FILES: dict[str, dict[str, tuple[IdxFile, IdxFile]]] = {
    "mnist": {
        "train": (
            IdxFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            IdxFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ),
        "test": (
            IdxFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            IdxFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    },
    "fashion-mnist": {
        "train": (
            IdxFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            IdxFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ),
        "test": (
            IdxFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            IdxFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
    },
}

# Base URLs tried in order; the file name is appended.
IDX_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
# Size of the official archive: a local file of exactly this size is taken to be the official
# download and must then have the official md5. Other copies (such as shared/data's rebuild,
# with the official images, labels and order but other bytes) are checked by structure.
CIFAR10_SIZE = 170498071
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)
CIFAR10_META = "batches.meta"
