"""Reading IDX files (the format of MNIST and Fashion-MNIST), gzipped or raw.

Owns decoding one IDX file into a numpy array and checking it strictly: the magic number, the
dimensions in the header, a payload of exactly the declared size (no truncation, no trailing
bytes) and, for gzipped files, the gzip CRC and end-of-stream marker. Also owns checking that an
images file and a labels file belong together. Every problem is a `DataError` that names the
file, says what is wrong and how to fix it.

Does not own finding or downloading files (see `locate`) nor turning arrays into tensors (see
`idx_sources`).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from lifelong.errors import DataError

Kind = Literal["images", "labels"]

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# The magic number each kind of MNIST-style file must have: uint8, 3-D images / 1-D labels.
MAGIC: dict[Kind, int] = {"images": 0x00000803, "labels": 0x00000801}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "the file is corrupt or incomplete — delete it to download again, or replace it"


def read_idx(path: Path, kind: Kind | None = None) -> np.ndarray:
    """Decode one IDX file, gzipped (by content or a ``.gz`` suffix) or raw.

    Args:
        path: the file.
        kind: if given, the magic number must be exactly that of MNIST-style uint8 ``images``
            (0x00000803, 3-D) or ``labels`` (0x00000801, 1-D); otherwise any valid IDX header
            is accepted.

    Returns:
        The array with the header's shape and native byte order. For uint8 data it is a
        read-only view of the decoded bytes (copy it before writing to it).

    Raises:
        DataError: the file cannot be read, is not valid gzip (bad CRC, truncated), has a wrong
            magic number, or its payload is not exactly the size the header declares.
    """
    name = str(path)  # the full path: the fix is often to delete or replace that file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"{name}: cannot read the file ({e.strerror or e}); check the path and its "
            "permissions"
        ) from e
    if path.suffix == ".gz" or data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DataError(f"{name}: the gzip data is damaged ({e}); {_FIX}") from e
    return _decode(data, name, kind)


def _decode(data: bytes, name: str, kind: Kind | None) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes is too short for an IDX header; {_FIX}")
    magic = int.from_bytes(data[:4], "big")
    what = f" ({kind})" if kind else ""
    if kind is not None and magic != MAGIC[kind]:
        raise DataError(f"{name}: IDX magic {magic:#x} is not {MAGIC[kind]:#x}{what}; {_FIX}")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _DTYPES or ndim == 0:
        raise DataError(
            f"{name}: IDX magic {magic:#x} is not valid (expected 0x0000TTNN with a known type "
            f"code TT and NN ≥ 1 dimensions); {_FIX}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: the IDX header declares {ndim} dimensions but the file ends after "
            f"{len(data)} bytes; {_FIX}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        shape = "×".join(map(str, dims))
        problem = (
            f"the payload is truncated ({actual} bytes, {expected - actual} missing)"
            if actual < expected
            else f"{actual - expected} trailing bytes follow the payload"
        )
        raise DataError(
            f"{name}: the header declares {shape} {dtype.name} values ({expected} bytes) "
            f"but {problem}; {_FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return array.reshape(dims)


def check_labelled(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    images_path: Path,
    labels_path: Path,
    num_classes: int,
    image_shape: tuple[int, ...] | None = None,
) -> None:
    """Check that an images array and a labels array belong together.

    Args:
        images: decoded images file, shape (N, *image_shape).
        labels: decoded labels file, shape (N,).
        images_path: where `images` came from (for messages).
        labels_path: where `labels` came from (for messages).
        num_classes: labels must lie in ``0 .. num_classes - 1``.
        image_shape: if given, the exact shape of one image.

    Raises:
        DataError: the counts differ, an image has the wrong shape, or a label is out of range.
    """
    img, lab = str(images_path), str(labels_path)
    if image_shape is not None and tuple(images.shape[1:]) != image_shape:
        raise DataError(
            f"{img}: images are {'×'.join(map(str, images.shape[1:]))}, expected "
            f"{'×'.join(map(str, image_shape))}; this is not the expected dataset — replace it "
            "with the official file"
        )
    if labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{img} holds {images.shape[0]} images but {lab} holds {labels.shape[0]} labels; "
            "the two files come from different datasets or versions — replace both with the "
            "official files"
        )
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        raise DataError(
            f"{lab}: label {bad} is out of range 0..{num_classes - 1}; the file is corrupt or "
            "from a different dataset — replace it with the official file"
        )
    if labels.size and int(labels.min()) < 0:
        raise DataError(
            f"{lab}: label {int(labels.min())} is negative; the file is corrupt — replace it "
            "with the official file"
        )
