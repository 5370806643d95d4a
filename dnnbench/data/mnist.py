"""MNIST and Fashion-MNIST: find them on disk, download them when missing, check them.

A dataset lives in `<data dir>/<name>/` as the four IDX files (gzipped or plain, as published) or as a Keras-style
`<name>.npz`, so copies users already have work as they are. Arrays stay uint8: the caller converts on the device,
which keeps host memory and transfers four times smaller than float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dnnbench.data.idx import check_labels, read_idx_pair
from dnnbench.errors import DataError, one_of

DATA_DIR_ENV = "DNNBENCH_DATA_DIR"
# Comma- or space-separated base URLs, used instead of the built-in mirrors (local mirrors, tests).
MIRROR_ENV = {"mnist": "DNNBENCH_MNIST_MIRROR", "fashion-mnist": "DNNBENCH_FASHION_MNIST_MIRROR"}
# (connect, read) seconds per mirror: short, so that an offline machine fails in seconds.
DOWNLOAD_TIMEOUT = (3.0, 10.0)
STAMP_NAME = ".verified.json"

# The IDX file holding each array; each may be gzipped (name + ".gz", looked for first) or plain.
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = tuple(FILES)
SPLITS = (("x_train", "y_train"), ("x_test", "y_test"))

# Tried in order; the first one that works is tried first for the remaining files.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

# SHA-256 of the published files: tensorflow/datasets tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt
# (the Fashion-MNIST ones equal FILE_HASHES in keras/src/datasets/fashion_mnist.py); mnist.npz from
# keras/src/datasets/mnist.py. All mirrors serve identical bytes. A file with no entry (uncompressed IDX files, a
# home-made fashion-mnist.npz: no hash of those is published) gets the structure checks only; add one to pin it.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

INFO: dict[str, dict] = {
    name: {"input_shape": (28, 28), "classes": 10, "train": 60000, "test": 10000, "source": MIRRORS[name][0]}
    for name in ("mnist", "fashion-mnist")
}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def default_data_dir() -> Path:
    """`$DNNBENCH_DATA_DIR`, else `<user cache>/dnnbench/datasets`."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs  # here, not at the top: only data commands need it

    return Path(platformdirs.user_cache_dir("dnnbench")) / "datasets"


def _dataset_dir(name: str, data_dir: Path | None) -> Path:
    if name not in INFO:
        raise one_of("dataset", name, INFO)
    return Path(data_dir if data_dir is not None else default_data_dir()).expanduser() / name


def _find_idx(ds_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files present by array key, and the (gzip) names of those missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in FILES.items():
        for fname in (stem + ".gz", stem):
            if (ds_dir / fname).is_file():
                found[key] = ds_dir / fname
                break
        else:
            missing.append(stem + ".gz")
    return found, missing


def dataset_status(name: str, data_dir: Path | None = None) -> dict:
    """Whether a dataset is on disk, where, and in which form (no checksum work: it is fast)."""
    ds_dir = _dataset_dir(name, data_dir)
    _, missing = _find_idx(ds_dir)
    form = "idx" if not missing else "npz" if (ds_dir / f"{name}.npz").is_file() else None
    return {"cached": form is not None, "path": str(ds_dir), "form": form}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # at most 26 MB, read at once


def _read_stamps(ds_dir: Path) -> dict:
    try:
        stamps = json.loads((ds_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(ds_dir: Path, stamps: dict) -> None:
    # A read-only shared folder: hashing again next time beats failing now.
    write_quietly(ds_dir / STAMP_NAME, json.dumps(stamps, indent=1).encode())


def write_quietly(path: Path, data: bytes) -> None:
    """A cache file, whole or not at all (a temporary file renamed into place); where the folder
    cannot be written, nothing: the cache only saves the next run some work."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _verify(paths: Sequence[Path], checksums: Mapping[str, str], ds_dir: Path) -> None:
    """Check each file against its known SHA-256, skipping files stamped at this size+mtime."""
    stamps = _read_stamps(ds_dir)
    changed = False
    for path in paths:
        want = checksums.get(path.name)
        if want is None:
            continue
        st = path.stat()
        record = {"sha256": want, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if stamps.get(path.name) == record:
            continue
        got = _sha256(path)
        if got != want:
            raise DataError(
                f"{path}: SHA-256 mismatch (expected {want[:16]}..., got {got[:16]}...); "
                "delete it to re-download, or pass --no-verify for your own copy"
            )
        stamps[path.name] = record
        changed = True
    if changed:
        _write_stamps(ds_dir, stamps)


def _mirrors(name: str, mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get(MIRROR_ENV[name])
    if env is not None:
        return [m for m in re.split(r"[,\s]+", env) if m]
    return list(MIRRORS[name])


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Pooch logs each download to stderr at INFO; library code prints nothing but the bar."""
    import pooch

    logger, level = pooch.get_logger(), pooch.get_logger().level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(
    ds_dir: Path, fnames: Sequence[str], mirrors: list[str], checksums: Mapping[str, str], progress: bool, timeout
) -> bool:
    """Fetch each file from the first mirror that serves it; False if one cannot be fetched.

    Pooch streams into a temporary file in `ds_dir` and renames it into place only once its SHA-256 matches,
    so an interrupted or wrong download never leaves a file to be trusted.
    """
    import pooch
    import requests

    bar = progress and importlib.util.find_spec("tqdm") is not None
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=timeout)
    with _quiet_pooch():
        for fname in fnames:
            want = checksums.get(fname)
            mismatch = ""
            for base in list(mirrors):
                url = base.rstrip("/") + "/" + fname
                try:
                    known = f"sha256:{want}" if want else None
                    pooch.retrieve(url, known_hash=known, fname=fname, path=ds_dir, downloader=downloader)
                except requests.exceptions.RequestException:
                    continue  # down, refused, 404, timeout: try the next mirror
                except ValueError as exc:  # pooch's hash mismatch; the temp file is gone
                    got = re.search(r"but got (\w{16})", str(exc))
                    mismatch = (
                        f"{url}: SHA-256 mismatch of the downloaded file (expected {(want or '?')[:16]}..., "
                        f"got {got.group(1) if got else '?'}...); nothing was saved"
                    )
                    continue
                except OSError as exc:
                    raise DataError(f"{ds_dir}: cannot write ({exc.strerror or exc})") from None
                mirrors.remove(base)
                mirrors.insert(0, base)
                break
            else:
                if mismatch:
                    raise DataError(mismatch)
                return False
    return True


def _not_found(name: str, ds_dir: Path, missing: Sequence[str], why: str) -> DataError:
    return DataError(f"{name}: not found in {ds_dir}{why}; put {', '.join(missing)} (or {name}.npz) there")


def _check_images(source: str, x: np.ndarray, name: str) -> None:
    shape = INFO[name]["input_shape"]
    if x.dtype != np.uint8 or x.ndim != 1 + len(shape) or x.shape[1:] != shape:
        want = "x".join(map(str, shape))
        raise DataError(f"{source}: images are {x.dtype} {x.shape}, expected uint8 N x {want}")


def _read_npz(path: Path, name: str) -> Arrays:
    """Read and check a Keras-style npz (keys x_train, y_train, x_test, y_test)."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single .npy array, not an .npz archive")
        with npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(NPZ_KEYS)})")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DataError:  # a ValueError too, so let it through before the generic case
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    for xk, yk in SPLITS:
        x, y = arrays[xk], arrays[yk]
        _check_images(f"{path}[{xk}]", x, name)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{path}[{yk}]: labels are {y.dtype} {y.shape}, expected integers N")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images in {xk} but {len(y)} labels in {yk}")
        check_labels(f"{path}[{yk}]", y, INFO[name]["classes"])
        arrays[yk] = y.astype(np.uint8, copy=False)
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def load_mnist_like(
    name: str,
    data_dir: Path | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float] = DOWNLOAD_TIMEOUT,
) -> Arrays:
    """Load `mnist` or `fashion-mnist` as uint8 (x_train, y_train, x_test, y_test).

    Looks in `<data_dir>/<name>/` for the IDX files, then for `<name>.npz`, then downloads the missing IDX files
    (if `download`). `verify` checks known SHA-256s (recorded in a stamp file, so later loads skip hashing);
    `mirrors` and `checksums` override the built-in tables.
    """
    ds_dir = _dataset_dir(name, data_dir)
    sums = CHECKSUMS[name] if checksums is None else checksums
    found, missing = _find_idx(ds_dir)
    npz = ds_dir / f"{name}.npz"
    if missing and npz.is_file():
        if verify:
            _verify([npz], sums, ds_dir)
        return _read_npz(npz, name)
    if missing:
        if not download:
            raise _not_found(name, ds_dir, missing, " (downloading is off)")
        if not _download(ds_dir, missing, _mirrors(name, mirrors), sums, progress, timeout):
            raise _not_found(name, ds_dir, missing, " and could not be downloaded (no network?)")
        found, missing = _find_idx(ds_dir)
    if verify:
        _verify(list(found.values()), sums, ds_dir)
    out: list[np.ndarray] = []
    for xk, yk in SPLITS:
        x, y = read_idx_pair(found[xk], found[yk], INFO[name]["classes"])
        _check_images(str(found[xk]), x, name)
        out += [x, y]
    return out[0], out[1], out[2], out[3]
