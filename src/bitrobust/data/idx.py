"""Parse the gzip-compressed IDX files of MNIST and Fashion-MNIST.

IDX layout: a big-endian header (uint32 magic, then one uint32 size per dimension) followed by
the raw uint8 values, row-major. Magic 0x00000803 = 3-D uint8 (images), 0x00000801 = 1-D uint8
(labels). Parsing uses ``numpy.frombuffer``: a 60000-image file takes well under a second.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from bitrobust.data.files import CorruptDataset

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def decompress(raw: bytes, source: str) -> bytes:
    """Gunzip ``raw`` (the bytes of file ``source``), raising CorruptDataset if it is damaged."""
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise CorruptDataset(f"{source} is not a valid gzip file ({exc}); delete it") from None


def parse_idx(data: bytes, expected_magic: int, source: str) -> np.ndarray:
    """Return the uint8 array stored in the uncompressed IDX bytes ``data``.

    Checks the magic number and that the byte count equals header + product of the dimensions;
    ``source`` names the file in error messages.
    """
    if len(data) < 4:
        raise CorruptDataset(f"{source} is truncated: {len(data)} bytes, no IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise CorruptDataset(
            f"{source} has IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            "(not an MNIST-style "
            f"{'images' if expected_magic == IMAGES_MAGIC else 'labels'} file)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataset(f"{source} is truncated inside its {header}-byte IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise CorruptDataset(
            f"{source} holds {len(data)} bytes but its header {tuple(shape)} needs {expected} "
            "(truncated or corrupt)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_images_and_labels(
    images_gz: bytes, labels_gz: bytes, images_source: str, labels_source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a gzip'd images file and its labels file into (N, H, W) uint8 and (N,) uint8."""
    images = parse_idx(decompress(images_gz, images_source), IMAGES_MAGIC, images_source)
    labels = parse_idx(decompress(labels_gz, labels_source), LABELS_MAGIC, labels_source)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataset(
            f"{images_source} has {images.shape[0]} images but {labels_source} has "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise CorruptDataset(f"{labels_source} has label {labels.max()}, expected 0..9")
    return images, labels
