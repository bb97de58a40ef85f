"""IDX reader, loaders and verified downloads (against an HTTP server the test starts on 127.0.0.1)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from fastbp import datasets
from fastbp.datasets import DownloadError, IDXFormatError, make_mnist_like, read_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array, code",
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.arange(-3, 3, dtype=np.int8), 0x09),
        (np.arange(6, dtype=np.int16).reshape(3, 2) * 300, 0x0B),
        (np.arange(5, dtype=np.int32) * 70000, 0x0C),
        (np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3), 0x0D),
        (np.linspace(0, 1, 4, dtype=np.float64), 0x0E),
    ],
)
def test_read_idx_round_trips_every_type(tmp_path, array, code, compress):
    raw = idx_bytes(array, code)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    result = read_idx(path)
    np.testing.assert_array_equal(result, array)
    assert result.dtype.isnative and result.shape == array.shape


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
MALFORMED = {
    "empty": b"",
    "wrong magic": b"\x01\x00" + GOOD[2:],
    "unknown type": GOOD[:2] + b"\x07" + GOOD[3:],
    "zero dimensions": GOOD[:3] + b"\x00",
    "truncated header": GOOD[:6],
    "truncated data": GOOD[:-1],
    "trailing bytes": GOOD + b"\x00",
    "huge declared size": b"\x00\x00\x08\x02" + struct.pack(">II", 2**31, 2**31) + b"\x00" * 8,
    "truncated gzip": gzip.compress(GOOD)[:-12],
    "corrupt gzip": gzip.compress(GOOD)[:10] + b"\xff" * 20,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_idx_gives_a_clear_error(name):
    with pytest.raises(IDXFormatError):
        read_idx(MALFORMED[name], name=name)


def test_make_mnist_like_is_deterministic_balanced_and_learnable():
    X, y = make_mnist_like(3000, random_state=1)
    X2, y2 = make_mnist_like(3000, random_state=1)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert X.dtype == np.float32 and X.shape == (3000, 784) and 0 <= X.min() and X.max() <= 1
    assert np.bincount(y).min() == 300
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression(max_iter=300).fit(X[:2000], y[:2000]).score(X[2000:], y[2000:]) > 0.5
    with pytest.raises(ValueError):
        make_mnist_like(10, n_classes=1)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(tmp_path):
    X_train, y_train, X_test, y_test = datasets.load_fashion_mnist(home=tmp_path, download=False)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784) and X_train.dtype == np.float32
    assert (np.bincount(y_train) == 6000).all() and (np.bincount(y_test) == 1000).all()
    images = datasets.load_fashion_mnist(home=tmp_path, download=False, scale=False, flatten=False)[0]
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8


class _Server:
    """Serves ``files`` (name -> bytes) on 127.0.0.1; ``mode`` picks a fault for every request."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.mode, self.requests = files, "good", 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests += 1
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                if server.mode == "error" or body is None:
                    self.send_error(500 if body is not None else 404)
                    return
                if server.mode == "corrupt":
                    body = body[:-1] + bytes([body[-1] ^ 0xFF])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.mode == "interrupted" else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served_mnist(monkeypatch, tmp_path):
    """A tiny fake 'mnist' whose manifest checksums match the files the local server serves."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(4, dtype=np.uint8),
    }
    files, entries = {}, {}
    for key, array in arrays.items():
        body = gzip.compress(idx_bytes(array), mtime=0)
        name = f"{key}.gz"
        files[name] = body
        entries[key] = {"name": name, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    server = _Server(files)
    manifest = tmp_path / "manifest.json"
    spec = {"mirrors": [server.url], "system_dirs": [], "files": entries}
    manifest.write_text(json.dumps({"format": 1, "datasets": {"mnist": spec}}))
    monkeypatch.setattr(datasets, "MANIFEST", manifest)
    yield server, arrays, tmp_path / "cache"
    server.close()


def test_download_verifies_and_caches(served_mnist):
    server, arrays, home = served_mnist
    X_train, y_train, X_test, y_test = datasets.load_mnist(home=home, scale=False, flatten=False)
    np.testing.assert_array_equal(X_train, arrays["train_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    requests = server.requests
    datasets.load_mnist(home=home)  # from the cache now
    assert server.requests == requests
    assert sorted(p.name for p in (home / "mnist").iterdir()) == sorted(f"{k}.gz" for k in arrays)


@pytest.mark.parametrize("mode, message", [("corrupt", "checksum"), ("error", "500"), ("interrupted", "closed")])
def test_failed_download_leaves_no_file_and_says_what_to_do(served_mnist, mode, message):
    server, _, home = served_mnist
    server.mode = mode
    with pytest.raises(DownloadError, match=message) as error:
        datasets.load_mnist(home=home, timeout=5)
    assert "FASTBP_DATA" in str(error.value)
    assert not any((home / "mnist").iterdir()) if (home / "mnist").exists() else True


def test_no_download_and_unreachable_mirror(served_mnist):
    _, _, home = served_mnist
    with pytest.raises(datasets.DatasetError, match="download=False"):
        datasets.load_mnist(home=home, download=False)
    with pytest.raises(DownloadError):
        datasets.load_mnist(home=home, mirrors=["http://127.0.0.1:9/"], timeout=2)


def test_label_file_that_does_not_match_the_images(served_mnist, monkeypatch):
    _, arrays, home = served_mnist
    datasets.load_mnist(home=home)
    (home / "mnist" / "train_labels.gz").write_bytes(gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8))))
    with pytest.raises(IDXFormatError, match="6 images but 5 labels"):
        datasets.load_mnist(home=home)
