"""Reader for the IDX format that MNIST-style datasets ship in.

IDX is a big-endian header (two zero bytes, a type code, the number of dimensions, then one
uint32 per dimension) followed by the raw values. Files come gzipped or plain; everything is
checked before use so that a damaged download fails with one line naming the file, instead of
a reshape error deep in training.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from dnnbench.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
UINT8_CODE = 0x08
# What each kind of file must look like: images are N x rows x cols, labels are N.
KIND_NDIM = {"images": 3, "labels": 1}
_CHUNK = 1 << 22
# Deflate never expands more than about 1032:1, which bounds what a gzip file can hold.
_MAX_DEFLATE_RATIO = 1032


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (the name is not trusted)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _dims_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


def _parse_header(path: Path, head: bytes, kind: str | None) -> tuple[int, ...]:
    """Check the magic number and return the declared dimensions."""
    if len(head) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(head)} bytes)")
    magic = struct.unpack(">I", head[:4])[0]
    zero, code, ndim = head[:2], head[2], head[3]
    if kind is not None:
        want = (UINT8_CODE << 8) | KIND_NDIM[kind]
        if magic != want:
            raise DataError(f"{path}: bad magic number 0x{magic:08X} (expected 0x{want:08X} for {kind})")
    elif zero != b"\0\0" or ndim == 0:
        raise DataError(f"{path}: bad magic number 0x{magic:08X} (not an IDX file)")
    elif code != UINT8_CODE:
        raise DataError(f"{path}: unsupported IDX data type 0x{code:02X} (only 0x08 = uint8 is supported)")
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated header ({len(head)} bytes, {ndim} dimensions need {4 + 4 * ndim})")
    return struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])


def _size_error(path: Path, dims: tuple[int, ...], held: int) -> DataError:
    expected = math.prod(dims)
    what = "truncated" if held < expected else "trailing data"
    return DataError(f"{path}: {what}: header declares {_dims_text(dims)} = {expected} bytes, file holds {held}")


def _allocate(path: Path, dims: tuple[int, ...]) -> np.ndarray:
    try:
        return np.empty(dims, dtype=np.uint8)
    except (MemoryError, ValueError):
        raise DataError(f"{path}: header declares {_dims_text(dims)} values, too many to load") from None


def _fill(stream, out: np.ndarray) -> int:
    """Read into `out` until it is full or the stream ends; return the bytes read."""
    view = out.reshape(-1).data.cast("B")
    done = 0
    while done < len(view):
        n = stream.readinto(view[done : done + _CHUNK])
        if not n:
            break
        done += n
    return done


def _count_rest(stream) -> int:
    """Bytes left in the stream (read and dropped, to report trailing data exactly)."""
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
    return total


def _read_stream(path: Path, stream, kind: str | None, file_size: int, gz: bool) -> np.ndarray:
    head = stream.read(4)
    if len(head) == 4:
        head += stream.read(4 * head[3])
    dims = _parse_header(path, head, kind)
    expected = math.prod(dims)
    # Check sizes before allocating, so a damaged header cannot ask for terabytes.
    if not gz and file_size - len(head) != expected:
        raise _size_error(path, dims, file_size - len(head))
    if gz and expected > file_size * _MAX_DEFLATE_RATIO:
        raise DataError(
            f"{path}: truncated: header declares {_dims_text(dims)} = {expected} bytes, "
            f"more than a {file_size}-byte gzip file can hold"
        )
    out = _allocate(path, dims)
    got = _fill(stream, out)
    if got < expected:
        raise _size_error(path, dims, got)
    extra = _count_rest(stream)
    if extra:
        raise _size_error(path, dims, expected + extra)
    return out


def read_idx(path: Path, kind: str | None = None) -> np.ndarray:
    """Read a gzipped or plain uint8 IDX file into a uint8 array of its declared shape.

    `kind` ("images" or "labels") also pins the magic number (0x00000803 / 0x00000801).
    The array is filled straight from the file, so a 47 MB image set is held once, as uint8.
    """
    path = Path(path)
    if kind is not None and kind not in KIND_NDIM:
        raise ValueError(f"kind must be one of {sorted(KIND_NDIM)}, not {kind!r}")
    try:
        gz = is_gzip(path)
        with gzip.open(path, "rb") if gz else open(path, "rb") as stream:
            return _read_stream(path, stream, kind, path.stat().st_size, gz)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_labels(path: Path | str, labels: np.ndarray, n_classes: int) -> None:
    """Fail on the first label outside 0..n_classes-1 (a wrong file or a damaged one)."""
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: label {int(labels[i])} out of range 0..{n_classes - 1} (at index {i})")


def read_idx_pair(images_path: Path, labels_path: Path, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label IDX files, checking counts and label range."""
    x = read_idx(images_path, "images")
    y = read_idx(labels_path, "labels")
    if len(x) != len(y):
        raise DataError(f"{labels_path}: {len(x)} images but {len(y)} labels (images in {Path(images_path).name})")
    check_labels(labels_path, y, n_classes)
    return x, y
