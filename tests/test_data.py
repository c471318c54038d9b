"""Tests for bitrobust.data: IDX and CIFAR-10 parsing, checksums, downloads, digits.

Real MNIST / Fashion-MNIST / CIFAR-10 files are read from $BITROBUST_DATA_DIR (CI points it at
shared/data); those tests skip when the files are absent. CIFAR-10 format tests write tiny
batches in the original layout themselves. No test touches the network: an autouse fixture
makes every download attempt fail unless a test installs its own fake ``urlopen``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from bitrobust.data import (
    DATASETS,
    DIGITS_TRAIN_SIZE,
    CorruptDataset,
    DatasetUnavailable,
    dataset_info,
    files,
    idx,
    load_dataset,
    load_splits,
    resolve_data_dir,
)
from bitrobust.errors import BitrobustError

CIFAR_CLASSES = [
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
]


# --- Fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Make any download attempt fail as if offline; tests may install their own fake."""
    calls = []

    def offline(request, timeout=None):
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(files, "urlopen", offline)
    return calls


def real_file(*parts: str) -> Path:
    """Path of a file under $BITROBUST_DATA_DIR, or skip the test if it is not there."""
    root = os.environ.get("BITROBUST_DATA_DIR")
    if not root:
        pytest.skip("BITROBUST_DATA_DIR is not set")
    path = Path(root, *parts)
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


def idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """Uncompressed IDX file: big-endian magic, dimensions, then the payload."""
    return struct.pack(f">I{len(shape)}I", magic, *shape) + payload


class Py2StylePickler(pickle._Pickler):
    """Pickle byte and text strings as Python 2's cPickle did (BINSTRING), like the originals.

    Python 3's protocol 2 would wrap every bytes object in ``_codecs.encode``; the official
    CIFAR-10 files have plain string opcodes instead.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle of ``obj`` in the original files' style (numpy.core, BINSTRING)."""
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar_folder(folder: Path, per_batch: int = 20, seed: int = 0) -> dict[str, tuple]:
    """Write a tiny CIFAR-10 copy in the original layout; return {batch: (data, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    meta = {
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {
            b"batch_label": f"{name} of 6".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(py2_pickle(batch))
        batches[name] = (data, labels)
    return batches


def tar_folder(folder: Path, archive: Path) -> Path:
    """Pack ``folder`` as ``archive`` (.tar.gz) under its own name, like the official file."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@pytest.fixture
def cifar_copy(tmp_path):
    """A tiny CIFAR-10 copy: extracted folder in tmp/src, archive in tmp/archive/cifar10/."""
    folder = tmp_path / "src" / "cifar-10-batches-py"
    batches = write_cifar_folder(folder)
    archive = tar_folder(folder, tmp_path / "archive" / "cifar10" / "cifar-10-python.tar.gz")
    return folder, archive, batches


# --- Names, info and the data folder ---------------------------------------------------------


def test_dataset_info_covers_all_datasets():
    shapes = {"mnist": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32), "digits": (1, 8)}
    for name in DATASETS:
        info = dataset_info(name)
        assert info.name == name
        assert (info.in_channels, info.image_size) == shapes[name]
        assert info.num_classes == len(info.classes) == 10
        assert len(info.mean) == len(info.std) == info.in_channels
    assert dataset_info("CIFAR-10").name == "cifar10"
    assert dataset_info("fashion_mnist").name == "fashion-mnist"


def test_unknown_dataset_and_split_are_user_errors(tmp_path):
    with pytest.raises(BitrobustError, match="unknown dataset 'imagenet'.*mnist"):
        load_dataset("imagenet", data_dir=tmp_path)
    with pytest.raises(BitrobustError, match="unknown dataset"):
        dataset_info("svhn")
    with pytest.raises(BitrobustError, match="unknown split 'val'"):
        load_dataset("digits", "val")


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BITROBUST_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "bitrobust" / "data"
    monkeypatch.setenv("BITROBUST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel/../data") == tmp_path / "data"


# --- Real MNIST and Fashion-MNIST ------------------------------------------------------------

REAL_IDX = [
    # dataset, split, count, first labels, images file
    ("mnist", "train", 60000, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], "train-images-idx3-ubyte.gz"),
    ("mnist", "test", 10000, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], "t10k-images-idx3-ubyte.gz"),
    ("fashion-mnist", "train", 60000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "train-images-idx3-ubyte.gz"),
    ("fashion-mnist", "test", 10000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], "t10k-images-idx3-ubyte.gz"),
]


@pytest.mark.parametrize(("name", "split", "count", "first", "images_file"), REAL_IDX)
def test_real_idx_datasets(name, split, count, first, images_file):
    real_file(name, images_file)
    images, labels = load_dataset(name, split).tensors  # data dir from $BITROBUST_DATA_DIR
    assert images.shape == (count, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (count,) and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.tolist()[:10] == first
    assert set(labels.unique().tolist()) == set(range(10))
    # Pixels are the raw bytes / 255 (row-major 28x28 after the 16-byte header).
    raw = gzip.decompress(real_file(name, images_file).read_bytes())
    first_image = np.frombuffer(raw, np.uint8, count=784, offset=16).reshape(28, 28)
    assert torch.equal(images[0, 0], torch.from_numpy(first_image / np.float32(255)))


def copy_mnist_test(tmp_path: Path) -> Path:
    """Copy the real MNIST test files to tmp_path/mnist; return that folder."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for filename in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(real_file("mnist", filename), folder / filename)
    return folder


def test_corrupted_copy_fails_checksum(tmp_path):
    folder = copy_mnist_test(tmp_path)
    labels_file = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(labels_file.read_bytes())
    data[100] ^= 0xFF
    labels_file.write_bytes(bytes(data))
    with pytest.raises(CorruptDataset, match=r"md5.*expected ec29112d") as err:
        load_dataset("mnist", "test", tmp_path)
    assert str(labels_file) in str(err.value)


def test_truncated_copy_fails_checksum(tmp_path):
    folder = copy_mnist_test(tmp_path)
    images_file = folder / "t10k-images-idx3-ubyte.gz"
    images_file.write_bytes(images_file.read_bytes()[:5000])
    with pytest.raises(CorruptDataset, match="md5") as err:
        load_dataset("mnist", "test", tmp_path, download=False)
    assert str(images_file) in str(err.value)


# --- IDX parsing on synthetic files ----------------------------------------------------------


def test_idx_parse_roundtrip():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = idx.parse_idx(
        idx_bytes(idx.IMAGES_MAGIC, (2, 3, 4), pixels.tobytes()), idx.IMAGES_MAGIC, "x"
    )
    assert np.array_equal(parsed, pixels)


def test_idx_wrong_magic():
    labels_file = idx_bytes(idx.LABELS_MAGIC, (3,), bytes([1, 2, 3]))
    with pytest.raises(
        CorruptDataset,
        match=r"images.gz has IDX magic number 0x00000801, "
        r"expected 0x00000803",
    ):
        idx.parse_idx(labels_file, idx.IMAGES_MAGIC, "images.gz")
    with pytest.raises(CorruptDataset, match="magic"):
        idx.parse_idx(b"\x1f\x8b\x08\x00" + bytes(20), idx.LABELS_MAGIC, "l.gz")


def test_idx_truncated():
    good = idx_bytes(idx.IMAGES_MAGIC, (2, 28, 28), bytes(2 * 784))
    with pytest.raises(CorruptDataset, match=r"f.idx holds 1000 bytes .* needs 1584"):
        idx.parse_idx(good[:1000], idx.IMAGES_MAGIC, "f.idx")
    with pytest.raises(CorruptDataset, match="truncated"):
        idx.parse_idx(good[:10], idx.IMAGES_MAGIC, "f.idx")
    with pytest.raises(CorruptDataset, match="truncated"):
        idx.parse_idx(good[:2], idx.IMAGES_MAGIC, "f.idx")
    with pytest.raises(CorruptDataset, match="f.gz is not a valid gzip file"):
        idx.decompress(gzip.compress(good)[:-30], "f.gz")
    with pytest.raises(CorruptDataset, match="not a valid gzip"):
        idx.decompress(b"plain text", "f.gz")


def test_idx_images_and_labels_must_agree():
    images = gzip.compress(idx_bytes(idx.IMAGES_MAGIC, (2, 1, 1), bytes([0, 255])))
    labels = gzip.compress(idx_bytes(idx.LABELS_MAGIC, (3,), bytes([0, 1, 2])))
    with pytest.raises(CorruptDataset, match="2 images but l.gz has 3 labels"):
        idx.read_images_and_labels(images, labels, "i.gz", "l.gz")
    bad_labels = gzip.compress(idx_bytes(idx.LABELS_MAGIC, (2,), bytes([0, 12])))
    with pytest.raises(CorruptDataset, match="label 12"):
        idx.read_images_and_labels(images, bad_labels, "i.gz", "l.gz")


# --- Checksum cache and downloads ------------------------------------------------------------


def test_md5_is_checked_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    assert files.read_verified(path, md5) == b"hello"

    def no_hashing(*args):
        raise AssertionError("md5 recomputed for an unchanged file")

    monkeypatch.setattr(files.hashlib, "md5", no_hashing)
    assert files.read_verified(path, md5) == b"hello"
    monkeypatch.undo()
    path.write_bytes(b"hello, changed")
    with pytest.raises(CorruptDataset, match=str(path)):
        files.read_verified(path, md5)


def test_missing_files_offline_names_the_folder(tmp_path, no_network):
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset("mnist", "test", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "mnist") in message
    assert "BITROBUST_DATA_DIR" in message and "--data-dir" in message
    assert "network disabled" in message
    assert no_network and all(u.endswith("t10k-images-idx3-ubyte.gz") for u in no_network)
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial download left behind


def test_download_disabled_does_not_touch_network(tmp_path, no_network):
    with pytest.raises(DatasetUnavailable, match="download disabled") as err:
        load_dataset("fashion-mnist", "train", tmp_path, download=False)
    assert str(tmp_path / "fashion-mnist") in str(err.value)
    with pytest.raises(DatasetUnavailable, match="cifar-10-batches-py") as err:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert str(tmp_path) in str(err.value)
    assert no_network == []


def test_cifar_offline(tmp_path):
    with pytest.raises(DatasetUnavailable, match="cifar-10-python.tar.gz is missing") as err:
        load_dataset("cifar10", "test", tmp_path)
    assert str(tmp_path / "cifar10") in str(err.value)


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager."""


def test_download_falls_back_to_next_mirror_and_checks_md5(tmp_path, monkeypatch):
    payload = b"dataset bytes" * 1000
    served = []

    def fake_urlopen(request, timeout=None):
        served.append(request.full_url)
        if "bad-mirror" in request.full_url:
            raise urllib.error.URLError("unreachable")
        return FakeResponse(payload)

    monkeypatch.setattr(files, "urlopen", fake_urlopen)
    dest = tmp_path / "d" / "file.gz"
    files.download(
        ["http://bad-mirror/file.gz", "http://good/file.gz"],
        dest,
        hashlib.md5(payload).hexdigest(),
        what="test",
    )
    assert dest.read_bytes() == payload and served[-1] == "http://good/file.gz"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.gz"]

    other = tmp_path / "d" / "other.gz"
    with pytest.raises(DatasetUnavailable, match=r"other.gz is missing .* md5"):
        files.download(["http://good/other.gz"], other, "0" * 32, what="test")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.gz"]


def test_download_end_to_end_with_real_files(tmp_path, monkeypatch):
    sources = {
        name: real_file("mnist", name)
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    }

    def fake_urlopen(request, timeout=None):
        return FakeResponse(sources[request.full_url.rsplit("/", 1)[1]].read_bytes())

    monkeypatch.setattr(files, "urlopen", fake_urlopen)
    images, labels = load_dataset("mnist", "test", tmp_path).tensors
    assert images.shape == (10000, 1, 28, 28) and labels[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(sources)


# --- CIFAR-10 on tiny files in the original format -------------------------------------------


def expected_split(batches: dict, names: list[str]) -> tuple[np.ndarray, list[int]]:
    data = np.concatenate([batches[n][0] for n in names])
    labels = [label for n in names for label in batches[n][1]]
    return data, labels


def check_pixel_layout(images: torch.Tensor, data: np.ndarray) -> None:
    """images[i, c, row, col] must be data[i, c*1024 + row*32 + col] / 255."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        i, c, row, col = (int(rng.integers(n)) for n in (len(data), 3, 32, 32))
        assert images[i, c, row, col].item() == np.float32(data[i, c * 1024 + row * 32 + col]) / 255


@pytest.mark.parametrize("layout", ["folder-in-cifar10", "folder-at-root", "archive"])
def test_cifar_reads_every_layout(tmp_path, cifar_copy, layout):
    folder, archive, batches = cifar_copy
    root = tmp_path / "root"
    if layout == "folder-in-cifar10":
        shutil.copytree(folder, root / "cifar10" / folder.name)
    elif layout == "folder-at-root":
        shutil.copytree(folder, root / folder.name)
    else:
        root = archive.parent.parent
    train, test = load_splits("cifar10", root, download=False)
    train_data, train_labels = expected_split(batches, [f"data_batch_{i}" for i in range(1, 6)])
    test_data, test_labels = expected_split(batches, ["test_batch"])
    expected = ((train, train_data, train_labels), (test, test_data, test_labels))
    for dataset, data, labels in expected:
        images, got_labels = dataset.tensors
        assert images.shape == (len(data), 3, 32, 32) and images.dtype == torch.float32
        assert got_labels.dtype == torch.int64 and got_labels.tolist() == labels
        assert images.min() >= 0.0 and images.max() <= 1.0
        check_pixel_layout(images, data)
    single = load_dataset("cifar10", "test", root, download=False)
    assert torch.equal(single.tensors[0], test.tensors[0])


def test_cifar_pixel_planes(tmp_path):
    """Red plane first, then green, then blue; each plane row-major."""
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=1)
    row = np.zeros(3072, np.uint8)
    row[:1024], row[1024:2048], row[2048:] = 10, 20, 30
    row[0 * 1024 + 2 * 32 + 5] = 200  # red, row 2, column 5
    row[2 * 1024 + 31 * 32 + 0] = 255  # blue, row 31, column 0
    batch = {b"batch_label": b"t", b"labels": [3], b"data": row[None], b"filenames": [b"a.png"]}
    (folder / "test_batch").write_bytes(py2_pickle(batch))
    image = load_dataset("cifar10", "test", tmp_path).tensors[0][0] * 255
    assert image[0, 2, 5] == 200 and image[2, 31, 0] == 255
    assert image[0, 2, 6] == 10 and image[1].unique().tolist() == [20]
    assert image[2, 30, 0] == 30


def test_cifar_accepts_python3_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=2)
    batch = {b"labels": np.array([1, 2]), b"data": np.full((2, 3072), 7, np.uint8)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = load_dataset("cifar10", "test", tmp_path).tensors
    assert labels.tolist() == [1, 2] and images.shape == (2, 3, 32, 32)


def write_bad_test_batch(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=4)
    (folder / "test_batch").write_bytes(content)
    return folder / "test_batch"


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, r"uint8 \(4, 3000\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "float32"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "expected 4 integer labels"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "0..10"),
        ({b"data": [1, 2, 3], b"labels": [0]}, "data is list"),
        ({b"images": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4}, "not a CIFAR-10 batch"),
        ([1, 2, 3], "not a CIFAR-10 batch"),
    ],
)
def test_cifar_malformed_batch(tmp_path, batch, message):
    path = write_bad_test_batch(tmp_path, py2_pickle(batch))
    with pytest.raises(CorruptDataset, match=message) as err:
        load_dataset("cifar10", "test", tmp_path)
    assert str(path) in str(err.value)


class Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_disallowed_globals(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": Exploit(marker), b"labels": [0]}, protocol=2)
    path = write_bad_test_batch(tmp_path, payload)
    with pytest.raises(CorruptDataset, match=r"refers to (posix|nt|os)\.system") as err:
        load_dataset("cifar10", "test", tmp_path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_cifar_garbage_and_meta(tmp_path):
    path = write_bad_test_batch(tmp_path, b"this is not a pickle")
    with pytest.raises(CorruptDataset, match="not a valid pickle"):
        load_dataset("cifar10", "test", tmp_path)
    path.write_bytes(py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})[:-40])
    with pytest.raises(CorruptDataset, match="not a valid pickle"):
        load_dataset("cifar10", "test", tmp_path)
    (path.parent / "batches.meta").write_bytes(py2_pickle({b"label_names": [b"apple"] * 10}))
    with pytest.raises(CorruptDataset, match="batches.meta: label_names"):
        load_dataset("cifar10", "test", tmp_path)


def test_cifar_incomplete_or_truncated_archive(tmp_path, cifar_copy):
    folder, archive, _ = cifar_copy
    (folder / "test_batch").unlink()
    incomplete = tar_folder(folder, tmp_path / "incomplete" / "cifar10" / archive.name)
    with pytest.raises(CorruptDataset, match="lacks test_batch") as err:
        load_dataset("cifar10", "test", incomplete.parent.parent)
    assert str(incomplete) in str(err.value)
    with pytest.raises(CorruptDataset, match="lacks test_batch"):
        load_dataset("cifar10", "test", folder.parent, download=False)
    truncated = tmp_path / "truncated" / "cifar10" / archive.name
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CorruptDataset, match="not a readable .tar.gz archive") as err:
        load_splits("cifar10", truncated.parent.parent)
    assert str(truncated) in str(err.value)


def test_real_cifar10_test_split():
    real_file("cifar10", "cifar-10-python.tar.gz")
    images, labels = load_dataset("cifar10", "test").tensors
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist()[:10] == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(labels).tolist() == [1000] * 10
    assert images.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.4942, 0.4851, 0.4504], abs=1e-4)


# --- Digits (scikit-learn) -------------------------------------------------------------------


def test_digits_shapes_and_deterministic_split():
    train, test = load_splits("digits")
    (x_train, y_train), (x_test, y_test) = train.tensors, test.tensors
    assert x_train.shape == (DIGITS_TRAIN_SIZE, 1, 8, 8) and x_train.dtype == torch.float32
    assert x_test.shape == (1797 - DIGITS_TRAIN_SIZE, 1, 8, 8)
    assert y_train.dtype == torch.int64 and set(y_train.tolist()) == set(range(10))
    assert set(y_test.tolist()) == set(range(10))
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    again = load_dataset("digits", "train")
    assert torch.equal(again.tensors[0], x_train) and torch.equal(again.tensors[1], y_train)
    assert y_train[:10].tolist() == list(range(10))


def test_cifar10_archive_of_official_size_must_have_official_md5(tmp_path, monkeypatch):
    """A local archive the size of the official download is checked against the official md5."""
    from bitrobust.data.catalog import CIFAR10_SIZE

    folder = tmp_path / "cifar10"
    folder.mkdir()
    with open(folder / "cifar-10-python.tar.gz", "wb") as handle:
        handle.truncate(CIFAR10_SIZE)  # sparse: as large as the official file, wrong content
    with pytest.raises(CorruptDataset, match="md5"):
        load_dataset("cifar10", "test", tmp_path, download=False)
