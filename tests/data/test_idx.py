"""IDX reader: valid files load as uint8, every kind of damage fails with one clear line."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dnnbench.data.idx import read_idx, read_idx_pair
from dnnbench.errors import DataError, InputError


def idx_bytes(arr: np.ndarray, magic: int | None = None, extra: bytes = b"", cut: int = 0) -> bytes:
    """An IDX file for `arr`: header (or a forced magic), payload minus `cut` bytes, then `extra`."""
    magic = (0x0800 | arr.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = arr.astype(np.uint8).tobytes()
    return header + payload[: len(payload) - cut] + extra


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([0, 1, 2, 9, 4], dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_reads_images_and_labels(tmp_path, images, labels, gz):
    x = read_idx(write(tmp_path / "x", idx_bytes(images), gz), "images")
    y = read_idx(write(tmp_path / "y", idx_bytes(labels), gz), "labels")
    assert x.dtype == np.uint8 and x.shape == (5, 28, 28)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    x[0, 0, 0] = 1  # a normal writable array, not a view of a read-only buffer


def test_gzip_is_detected_by_content_not_name(tmp_path, images):
    plain_named_gz = write(tmp_path / "x.gz", idx_bytes(images))
    gz_named_plain = write(tmp_path / "x", idx_bytes(images), gz=True)
    np.testing.assert_array_equal(read_idx(plain_named_gz, "images"), images)
    np.testing.assert_array_equal(read_idx(gz_named_plain, "images"), images)


def test_any_uint8_idx_without_kind(tmp_path):
    cube = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "c", idx_bytes(cube))), cube)


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic(tmp_path, images, labels, gz):
    path = write(tmp_path / "x", idx_bytes(images, magic=0x00000804), gz)
    with pytest.raises(DataError, match=r"bad magic number 0x00000804 \(expected 0x00000803 for images\)"):
        read_idx(path, "images")
    path = write(tmp_path / "y", idx_bytes(labels), gz)
    with pytest.raises(DataError) as err:
        read_idx(path, "images")
    assert str(err.value) == f"{path}: bad magic number 0x00000801 (expected 0x00000803 for images)"


def test_not_idx_and_unsupported_type(tmp_path, labels):
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(write(tmp_path / "t", b"hello world, not idx"))
    with pytest.raises(DataError, match=r"unsupported IDX data type 0x0D \(only 0x08 = uint8"):
        read_idx(write(tmp_path / "f", idx_bytes(labels, magic=0x00000D01)))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, images, gz):
    path = write(tmp_path / "x", idx_bytes(images, cut=3920 - 1000), gz)
    with pytest.raises(DataError) as err:
        read_idx(path, "images")
    assert str(err.value) == f"{path}: truncated: header declares 5x28x28 = 3920 bytes, file holds 1000"


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, images, gz):
    path = write(tmp_path / "x", idx_bytes(images, extra=b"\0" * 10), gz)
    with pytest.raises(DataError, match="trailing data: header declares 5x28x28 = 3920 bytes, file holds 3930"):
        read_idx(path, "images")


@pytest.mark.parametrize("gz", [False, True])
def test_huge_declared_size_fails_before_allocating(tmp_path, gz):
    header = struct.pack(">IIII", 0x803, 4_000_000_000, 4_000_000_000, 4_000_000_000)
    path = write(tmp_path / "x", header + b"\0" * 10, gz)
    with pytest.raises(DataError, match=f"{path}: truncated: header declares 4000000000x4000000000x"):
        read_idx(path, "images")


@pytest.mark.parametrize("data", [b"", b"\0\0\x08"], ids=["empty", "3 bytes"])
def test_too_short_for_header(tmp_path, data):
    with pytest.raises(DataError, match="too short for an IDX header"):
        read_idx(write(tmp_path / "x", data), "images")


def test_truncated_header(tmp_path):
    with pytest.raises(DataError, match=r"truncated header \(8 bytes, 3 dimensions need 16\)"):
        read_idx(write(tmp_path / "x", struct.pack(">II", 0x803, 5)), "images")


def test_corrupt_gzip(tmp_path, images):
    packed = gzip.compress(idx_bytes(images), mtime=0)
    cut = write(tmp_path / "cut.gz", packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"cut.gz: corrupt or truncated gzip data"):
        read_idx(cut, "images")
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    with pytest.raises(DataError, match=r"flip.gz: corrupt or truncated gzip data"):
        read_idx(write(tmp_path / "flip.gz", bytes(flipped)), "images")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope: file not found"):
        read_idx(tmp_path / "nope")


def test_pair_ok(tmp_path, images, labels):
    x, y = read_idx_pair(write(tmp_path / "x", idx_bytes(images)), write(tmp_path / "y", idx_bytes(labels)))
    assert x.shape == (5, 28, 28) and y.shape == (5,)


def test_pair_count_mismatch(tmp_path, images, labels):
    xp, yp = write(tmp_path / "x", idx_bytes(images)), write(tmp_path / "y", idx_bytes(labels[:4]), gz=True)
    with pytest.raises(DataError) as err:
        read_idx_pair(xp, yp)
    assert str(err.value) == f"{yp}: 5 images but 4 labels (images in x)"


def test_pair_label_out_of_range(tmp_path, images, labels):
    labels[3] = 12
    xp, yp = write(tmp_path / "x", idx_bytes(images)), write(tmp_path / "y", idx_bytes(labels))
    with pytest.raises(DataError) as err:
        read_idx_pair(xp, yp)
    assert str(err.value) == f"{yp}: label 12 out of range 0..9 (at index 3)"
    read_idx_pair(xp, yp, n_classes=13)


def test_data_error_is_an_input_error_with_exit_code_2():
    assert issubclass(DataError, InputError) and DataError.exit_code == 2
