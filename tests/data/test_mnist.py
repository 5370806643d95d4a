"""MNIST loaders: the on-disk forms, checksums and their stamp, npz checks, and downloads
from a local HTTP server (mirror fallback, bad bytes, offline reuse). Never touches the network
or the real user cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from dnnbench.data import mnist
from dnnbench.errors import DataError, InputError

GZ_NAMES = [stem + ".gz" for stem in mnist.FILES.values()]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep every test off the real cache and off any proxy (the server is on 127.0.0.1)."""
    monkeypatch.setenv(mnist.DATA_DIR_ENV, str(tmp_path / "cache"))
    for var in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        *mnist.MIRROR_ENV.values(),
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def idx_file(arr: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def make_files(n_train: int = 12, n_test: int = 6, gz: bool = True) -> tuple[dict[str, bytes], dict]:
    """File name -> bytes for a small valid dataset, and the arrays by key."""
    rng = np.random.default_rng(n_train)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    files = {}
    for key, stem in mnist.FILES.items():
        data = idx_file(arrays[key])
        files[stem + ".gz" if gz else stem] = gzip.compress(data, mtime=0) if gz else data
    return files, arrays


def sums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def put(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def assert_arrays(got, arrays) -> None:
    for key, arr in zip(mnist.NPZ_KEYS, got, strict=True):
        assert arr.dtype == np.uint8
        np.testing.assert_array_equal(arr, arrays[key])


@pytest.fixture
def ds(tmp_path) -> Path:
    return tmp_path / "cache" / "mnist"


# --- local files --------------------------------------------------------------------------


def test_default_data_dir(tmp_path, monkeypatch):
    assert mnist.default_data_dir() == tmp_path / "cache"
    monkeypatch.delenv(mnist.DATA_DIR_ENV)
    default = mnist.default_data_dir()
    assert default.name == "datasets" and "dnnbench" in str(default)


def test_loads_gz_files_and_stamps_verification(ds, monkeypatch):
    files, arrays = make_files()
    put(ds, files)
    assert_arrays(mnist.load_mnist_like("mnist", checksums=sums(files), download=False), arrays)
    assert (ds / mnist.STAMP_NAME).is_file()

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again despite its stamp")

    monkeypatch.setattr(mnist, "_sha256", no_hashing)
    assert_arrays(mnist.load_mnist_like("mnist", checksums=sums(files), download=False), arrays)


def test_checksum_mismatch_and_no_verify(ds):
    files, arrays = make_files()
    put(ds, files)
    wrong = dict(sums(files), **{"train-images-idx3-ubyte.gz": "ab" * 32})
    with pytest.raises(DataError) as err:
        mnist.load_mnist_like("mnist", checksums=wrong, download=False)
    assert str(err.value).startswith(f"{ds / 'train-images-idx3-ubyte.gz'}: SHA-256 mismatch (expected abababab")
    assert "delete it to re-download, or pass --no-verify for your own copy" in str(err.value)
    assert_arrays(mnist.load_mnist_like("mnist", checksums=wrong, download=False, verify=False), arrays)


def test_changed_file_is_hashed_again(ds):
    files, _ = make_files()
    put(ds, files)
    mnist.load_mnist_like("mnist", checksums=sums(files), download=False)
    other, _ = make_files(n_train=13)
    (ds / "train-labels-idx1-ubyte.gz").write_bytes(other["train-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        mnist.load_mnist_like("mnist", checksums=sums(files), download=False)


def test_real_checksums_reject_generated_files(ds):
    put(ds, make_files()[0])
    with pytest.raises(DataError, match="expected 440fcabf73cc546f"):
        mnist.load_mnist_like("mnist", download=False)


def test_plain_and_mixed_idx_files(ds):
    plain, arrays = make_files(gz=False)
    put(ds, plain)  # no published hash for plain files: structure checks only
    assert_arrays(mnist.load_mnist_like("mnist", download=False), arrays)
    gz, _ = make_files(gz=True)
    put(ds, {"t10k-labels-idx1-ubyte.gz": gz["t10k-labels-idx1-ubyte.gz"]})
    assert_arrays(mnist.load_mnist_like("mnist", download=False, checksums=sums(gz)), arrays)


def test_idx_damage_is_reported(ds):
    files, arrays = make_files()
    arrays["y_test"][2] = 12
    files["t10k-labels-idx1-ubyte.gz"] = gzip.compress(idx_file(arrays["y_test"]))
    put(ds, files)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 12 out of range 0..9"):
        mnist.load_mnist_like("mnist", download=False, verify=False)


def test_wrong_image_size_is_reported(ds):
    files, _ = make_files()
    files["train-images-idx3-ubyte.gz"] = gzip.compress(idx_file(np.zeros((12, 32, 32), np.uint8)))
    put(ds, files)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: images are uint8 \(12, 32, 32\)"):
        mnist.load_mnist_like("mnist", download=False, verify=False)


def test_npz(ds):
    _, arrays = make_files()
    ds.mkdir(parents=True)
    np.savez(ds / "mnist.npz", **arrays)
    got = mnist.load_mnist_like("mnist", download=False, checksums={})
    assert_arrays(got, arrays)
    npz_sum = {"mnist.npz": hashlib.sha256((ds / "mnist.npz").read_bytes()).hexdigest()}
    assert_arrays(mnist.load_mnist_like("mnist", download=False, checksums=npz_sum), arrays)
    with pytest.raises(DataError, match=r"mnist.npz: SHA-256 mismatch"):
        mnist.load_mnist_like("mnist", download=False)  # the real Keras hash


def test_npz_int64_labels_become_uint8(tmp_path):
    _, arrays = make_files()
    folder = tmp_path / "cache" / "fashion-mnist"
    folder.mkdir(parents=True)
    np.savez(folder / "fashion-mnist.npz", **dict(arrays, y_train=arrays["y_train"].astype(np.int64)))
    got = mnist.load_mnist_like("fashion-mnist", download=False)  # no known hash: structure only
    assert_arrays(got, arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_test"), r"mnist.npz: missing key\(s\) y_test \(expected x_train, y_train"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), r"mnist.npz: 12 images in x_train but 11 labels"),
        (lambda a: a.update(x_test=a["x_test"] / 255.0), r"mnist.npz\[x_test\]: images are float64"),
        (lambda a: a.update(x_train=a["x_train"].reshape(12, -1)), r"images are uint8 \(12, 784\)"),
        (lambda a: a.update(y_test=a["y_test"] + 0.5), r"mnist.npz\[y_test\]: labels are float64"),
        (lambda a: a["y_test"].__setitem__(0, 10), r"mnist.npz\[y_test\]: label 10 out of range 0..9"),
    ],
    ids=["missing key", "lengths", "float images", "flat images", "float labels", "label range"],
)
def test_npz_damage_is_reported(ds, change, message):
    _, arrays = make_files()
    change(arrays)
    ds.mkdir(parents=True)
    np.savez(ds / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=message):
        mnist.load_mnist_like("mnist", download=False, verify=False)


def test_npz_not_a_zip(ds):
    ds.mkdir(parents=True)
    (ds / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"mnist.npz: not a readable .npz file"):
        mnist.load_mnist_like("mnist", download=False, verify=False)


def test_idx_files_win_over_npz(ds):
    files, arrays = make_files()
    put(ds, dict(files, **{"mnist.npz": b"garbage"}))
    assert_arrays(mnist.load_mnist_like("mnist", download=False, verify=False), arrays)


def test_missing_without_download(ds):
    with pytest.raises(DataError) as err:
        mnist.load_mnist_like("mnist", download=False)
    assert str(err.value) == (
        f"mnist: not found in {ds} (downloading is off); put train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
        "(or mnist.npz) there"
    )
    assert not ds.exists()


def test_unknown_dataset():
    with pytest.raises(InputError, match="unknown dataset 'cifar'; valid: fashion-mnist, mnist"):
        mnist.load_mnist_like("cifar")


def test_dataset_status(ds, tmp_path):
    assert mnist.dataset_status("mnist") == {"cached": False, "path": str(ds), "form": None}
    files, arrays = make_files()
    put(ds, dict(list(files.items())[:3]))
    assert mnist.dataset_status("mnist")["cached"] is False  # an incomplete set does not count
    np.savez(ds / "mnist.npz", **arrays)
    assert mnist.dataset_status("mnist")["form"] == "npz"
    put(ds, files)
    assert mnist.dataset_status("mnist") == {"cached": True, "path": str(ds), "form": "idx"}
    other = mnist.dataset_status("fashion-mnist", tmp_path / "elsewhere")
    assert other == {"cached": False, "path": str(tmp_path / "elsewhere" / "fashion-mnist"), "form": None}


def test_info_catalogue():
    assert mnist.INFO["mnist"]["source"] == mnist.MIRRORS["mnist"][0]
    assert mnist.INFO["fashion-mnist"]["train"] == 60000
    assert set(mnist.CHECKSUMS["mnist"]) >= set(GZ_NAMES)
    assert set(mnist.CHECKSUMS["fashion-mnist"]) == set(GZ_NAMES)


# --- downloads from a local server --------------------------------------------------------


class Server:
    """A tiny HTTP server on 127.0.0.1: /good/<name> serves files, /bad/<name> wrong bytes."""

    def __init__(self, files: dict[str, bytes]):
        routes = {f"/good/{n}": d for n, d in files.items()}
        routes.update({f"/bad/{n}": d[:-1] + bytes([d[-1] ^ 1]) for n, d in files.items()})
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                log.append(self.path)
                body = routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    files, arrays = make_files()
    server = Server(files)
    yield server, files, arrays
    server.stop()


def refused_url() -> str:
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_falls_back_then_works_offline(ds, served):
    server, files, arrays = served
    mirrors = [refused_url(), server.url + "/missing/", server.url + "/good/"]
    got = mnist.load_mnist_like("mnist", mirrors=mirrors, checksums=sums(files))
    assert_arrays(got, arrays)
    assert sorted(p.name for p in ds.iterdir()) == sorted([*GZ_NAMES, mnist.STAMP_NAME])
    # One 404, then the mirror that worked is tried first for the remaining files.
    assert server.requests[0] == "/missing/train-images-idx3-ubyte.gz" and len(server.requests) == 1 + 4
    server.stop()
    assert_arrays(mnist.load_mnist_like("mnist", mirrors=mirrors, checksums=sums(files)), arrays)
    assert mnist.dataset_status("mnist")["form"] == "idx"


def test_download_wrong_bytes_leaves_nothing(ds, served):
    server, files, _ = served
    with pytest.raises(DataError) as err:
        mnist.load_mnist_like("mnist", mirrors=[server.url + "/bad"], checksums=sums(files))
    message = str(err.value)
    assert message.startswith(f"{server.url}/bad/train-images-idx3-ubyte.gz: SHA-256 mismatch of the downloaded")
    assert message.endswith("nothing was saved")
    assert list(ds.iterdir()) == []


def test_download_bad_mirror_then_good_one(ds, served):
    server, files, arrays = served
    mirrors = [server.url + "/bad", server.url + "/good"]
    assert_arrays(mnist.load_mnist_like("mnist", mirrors=mirrors, checksums=sums(files)), arrays)
    assert sorted(os.listdir(ds)) == sorted([*GZ_NAMES, mnist.STAMP_NAME])


def test_download_only_missing_files(ds, served):
    server, files, arrays = served
    put(ds, {"t10k-labels-idx1-ubyte.gz": files["t10k-labels-idx1-ubyte.gz"]})
    mnist.load_mnist_like("mnist", mirrors=[server.url + "/good"], checksums=sums(files))
    assert "/good/t10k-labels-idx1-ubyte.gz" not in server.requests and len(server.requests) == 3


def test_all_mirrors_down(ds):
    with pytest.raises(DataError) as err:
        mnist.load_mnist_like("mnist", mirrors=[refused_url(), refused_url()])
    assert str(err.value) == (
        f"mnist: not found in {ds} and could not be downloaded (no network?); put "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (or mnist.npz) there"
    )
    assert not ds.exists() or not any(ds.iterdir())


def test_mirror_env_var(ds, served, monkeypatch):
    server, files, arrays = served
    monkeypatch.setenv("DNNBENCH_MNIST_MIRROR", f"{refused_url()}, {server.url}/good")
    assert_arrays(mnist.load_mnist_like("mnist", checksums=sums(files)), arrays)
