"""Tests of the IDX reader, file lookup/download and the real-image sources."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.data.sources import SOURCES, idx_sources, locate, split_exact
from lifelong.data.sources.idx import check_labelled, read_idx
from lifelong.data.sources.idx_sources import read_images_labels
from lifelong.data.sources.locate import find_files
from lifelong.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mnist = pytest.mark.skipif(
    not (SHARED / "mnist-t10k").is_dir(), reason=f"shared data folder {SHARED}/mnist-t10k absent"
)
needs_fashion = pytest.mark.skipif(
    not (SHARED / "fashion-mnist").is_dir(),
    reason=f"shared data folder {SHARED}/fashion-mnist absent",
)


pytestmark = pytest.mark.usefixtures("isolated_data")


# ----------------------------------------------------------------------------- IDX reader


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of uint8 `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


IMAGES = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
LABELS = np.array([0, 1, 2, 1, 0], dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = read_idx(write(tmp_path / f"img{suffix}", idx_bytes(IMAGES)), "images")
    labels = read_idx(write(tmp_path / f"lab{suffix}", idx_bytes(LABELS)), "labels")
    assert images.dtype == np.uint8 and images.shape == (5, 3, 4)
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, LABELS)


def test_read_idx_other_dtype_native_order(tmp_path: Path) -> None:
    values = np.array([[1, -2], [300, 4]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") * 2 + values.tobytes()
    out = read_idx(write(tmp_path / "x.idx", data))
    assert out.dtype == np.dtype(np.int32)
    np.testing.assert_array_equal(out, [[1, -2], [300, 4]])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_wrong_magic(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"train-images-idx3-ubyte{suffix}", b"\x00" * 32)
    with pytest.raises(DataError, match=r"IDX magic 0x0 is not 0x803 \(images\)") as err:
        read_idx(path, "images")
    assert str(path) in str(err.value) and "delete it" in str(err.value)


def test_labels_read_as_images(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.gz", idx_bytes(LABELS))
    with pytest.raises(DataError, match=r"labels.gz: IDX magic 0x801 is not 0x803"):
        read_idx(path, "images")


def test_invalid_magic_without_kind(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not valid"):
        read_idx(write(tmp_path / "x", bytes([0, 0, 0x42, 1, 0, 0, 0, 0])))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_payload(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"img{suffix}", idx_bytes(IMAGES)[:-1])
    with pytest.raises(DataError, match=r"img.*truncated \(59 bytes, 1 missing\)"):
        read_idx(path, "images")


def test_truncated_header(tmp_path: Path) -> None:
    path = write(tmp_path / "img", idx_bytes(IMAGES)[:10])
    with pytest.raises(DataError, match="declares 3 dimensions but the file ends after 10"):
        read_idx(path, "images")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_trailing_bytes(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"lab{suffix}", idx_bytes(LABELS) + b"\x00\x00")
    with pytest.raises(DataError, match=r"lab.*2 trailing bytes"):
        read_idx(path, "labels")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "img.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:-12])
    with pytest.raises(DataError, match=r"img.gz: the gzip data is damaged"):
        read_idx(path, "images")


def test_gzip_crc_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(idx_bytes(IMAGES)))
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    path = tmp_path / "img.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"img.gz: the gzip data is damaged"):
        read_idx(path, "images")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.gz: cannot read"):
        read_idx(tmp_path / "nope.gz")


def test_count_mismatch(tmp_path: Path) -> None:
    img = write(tmp_path / "img.gz", idx_bytes(IMAGES))
    lab = write(tmp_path / "lab.gz", idx_bytes(LABELS[:4]))
    with pytest.raises(DataError, match=r"img.gz holds 5 images but .*lab.gz holds 4 labels"):
        read_images_labels(img, lab, num_classes=3, image_shape=(3, 4))


def test_label_out_of_range_and_wrong_shape(tmp_path: Path) -> None:
    img, lab = tmp_path / "img", tmp_path / "lab"
    with pytest.raises(DataError, match="lab: label 2 is out of range 0..1"):
        check_labelled(IMAGES, LABELS, images_path=img, labels_path=lab, num_classes=2)
    with pytest.raises(DataError, match="img: images are 3×4, expected 28×28"):
        check_labelled(IMAGES, LABELS, images_path=img, labels_path=lab, num_classes=3,
                       image_shape=(28, 28))


def test_read_images_labels_scales_to_unit_interval(tmp_path: Path) -> None:
    images = np.array([[[0, 255]], [[51, 102]]], dtype=np.uint8)
    img = write(tmp_path / "img.gz", idx_bytes(images))
    lab = write(tmp_path / "lab.gz", idx_bytes(np.array([1, 0], dtype=np.uint8)))
    x, y = read_images_labels(img, lab, num_classes=2, image_shape=(1, 2))
    assert x.dtype == np.float32 and x.shape == (2, 1, 1, 2) and y.dtype == np.int64
    np.testing.assert_array_equal(x.ravel(), np.array([0.0, 1.0, 0.2, 0.4], dtype=np.float32))


# ----------------------------------------------------------------------------- lookup

CONTENT = {"a.gz": b"first file", "b.gz": b"second file"}
FILES = {name: hashlib.sha256(data).hexdigest() for name, data in CONTENT.items()}


def put(folder: Path, content: dict[str, bytes] = CONTENT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in content.items():
        (folder / name).write_bytes(data)
    return folder


def test_data_dir_itself_and_subfolder(tmp_path: Path) -> None:
    direct = put(tmp_path / "mine")
    assert find_files("toy", FILES, [], direct) == {f: direct / f for f in FILES}
    nested = put(tmp_path / "root" / "toy")
    assert find_files("toy", FILES, [], tmp_path / "root") == {f: nested / f for f in FILES}


def test_data_dir_missing_does_not_fall_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(tmp_path / "env" / "toy")
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "env"))
    put(tmp_path / "typo", {"a.gz": CONTENT["a.gz"]})
    with pytest.raises(DataError) as err:
        find_files("toy", FILES, ["http://example.invalid/"], tmp_path / "typo")
    msg = str(err.value)
    assert f"data_dir {tmp_path / 'typo'} does not hold" in msg
    assert "has 1 of 2 files (missing b.gz)" in msg and "stream.data_dir" in msg


def test_lifelong_data_and_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = put(tmp_path / "env" / "other-name")
    monkeypatch.setenv("LIFELONG_DATA", f"{tmp_path / 'nothing'}:{tmp_path / 'env'}")
    found = find_files("toy", FILES, [], None, aliases=("other-name",))
    assert found == {f: folder / f for f in FILES}


def test_system_dir_and_unzipped_copy(tmp_path: Path) -> None:
    folder = put(tmp_path / "system" / "toy", {"a": b"unzipped", "b.gz": CONTENT["b.gz"]})
    assert find_files("toy", FILES, [], None) == {"a.gz": folder / "a", "b.gz": folder / "b.gz"}


def test_cache_verified(tmp_path: Path) -> None:
    folder = put(tmp_path / "cache" / "lifelong" / "toy")
    assert find_files("toy", FILES, [], None) == {f: folder / f for f in FILES}


def test_a_file_in_a_user_folder_that_is_not_the_official_one_is_refused_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = put(tmp_path / "data" / "toy", {**CONTENT, "b.gz": b"another dataset's file"})
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="is not the official file's") as err:
        find_files("toy", FILES, [], None)
    assert str(folder / "b.gz") in str(err.value)
    assert (folder / "b.gz").exists()  # the user's file is never deleted
    with pytest.raises(DataError, match="is not the official file's"):
        find_files("toy", FILES, [], folder)  # the same from an explicit data_dir
    (folder / "b.gz").unlink()
    (folder / "b").write_bytes(b"an unzipped copy cannot be hashed against the archive")
    assert find_files("toy", FILES, [], None)["b.gz"] == folder / "b"


def test_lifelong_data_that_is_a_file_is_named(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "f"))
    with pytest.raises(DataError, match="a file, not a folder"):
        find_files("toy", FILES, [], None)


def test_corrupt_cache_is_deleted_and_downloaded_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_mirror: str) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    cache = put(tmp_path / "cache" / "lifelong" / "toy", {**CONTENT, "a.gz": b"tampered"})
    found = find_files("toy", FILES, [f"{http_mirror}/mirror/"], None)
    assert found["a.gz"] == cache / "a.gz" and (cache / "a.gz").read_bytes() == CONTENT["a.gz"]


def test_unwritable_cache_is_named_not_blamed_on_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    (tmp_path / "blocker").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocker"))
    with pytest.raises(DataError, match="cannot be written") as err:
        find_files("toy", FILES, ["http://127.0.0.1:9/"], None)
    assert "XDG_CACHE_HOME" in str(err.value) and "network" not in str(err.value)


def test_a_transfer_cut_short_is_reported_as_such(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    class Short(io.BytesIO):
        headers = {"Content-Length": "999"}

        def __enter__(self) -> Short:
            return self

    monkeypatch.delenv("LIFELONG_OFFLINE")
    monkeypatch.setattr(locate, "urlopen", lambda url, timeout: Short(CONTENT["a.gz"]))
    with pytest.raises(DataError, match="cut off after 10 of 999 bytes"):
        find_files("toy", FILES, ["http://mirror.invalid/"], None)
    assert not any((tmp_path / "cache" / "lifelong" / "toy").glob("*"))


def test_cache_bad_checksum_deletes_file(tmp_path: Path) -> None:
    folder = put(tmp_path / "cache" / "lifelong" / "toy", {**CONTENT, "a.gz": b"tampered"})
    with pytest.raises(DataError) as err:
        find_files("toy", FILES, [], None)
    actual = hashlib.sha256(b"tampered").hexdigest()
    assert f"sha256 {actual} is not the expected {FILES['a.gz']}" in str(err.value)
    assert str(folder / "a.gz") in str(err.value)
    assert not (folder / "a.gz").exists() and (folder / "b.gz").exists()


def test_cache_respects_home_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert locate.cache_root() == tmp_path / "home" / ".cache" / "lifelong"


def test_offline_nothing_found_lists_every_place(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        idx_sources.load_fashion_mnist(None)
    msg = str(err.value)
    for expected in (
        "$LIFELONG_DATA: not set",
        f"{tmp_path / 'system' / 'fashion-mnist'}: no such folder",
        f"{tmp_path / 'cache' / 'lifelong' / 'fashion-mnist'} (download cache)",
        "download: disabled by LIFELONG_OFFLINE",
        "sudo apt-get install dataset-fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "--set stream.data_dir=",
        "LIFELONG_DATA=",
    ):
        assert expected in msg, f"{expected!r} missing from:\n{msg}"


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server over tmp_path/www; yields its base URL."""
    root = put(tmp_path / "www" / "mirror")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_tries_mirrors_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_mirror: str
) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    cache = tmp_path / "cache" / "lifelong" / "toy"
    put(cache, {"a.gz": CONTENT["a.gz"]})  # one file already cached: only b.gz is fetched
    found = find_files("toy", FILES, [f"{http_mirror}/absent/", f"{http_mirror}/mirror/"], None)
    assert found == {f: cache / f for f in FILES}
    assert (cache / "b.gz").read_bytes() == CONTENT["b.gz"]
    assert sorted(p.name for p in cache.iterdir()) == ["a.gz", "b.gz"]  # no temporary files


def test_download_bad_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    put(tmp_path / "www", {"a.gz": b"evil", "b.gz": CONTENT["b.gz"]})
    with pytest.raises(DataError) as err:
        find_files("toy", FILES, [(tmp_path / "www").as_uri()], None)
    msg = str(err.value)
    assert f"has sha256 {hashlib.sha256(b'evil').hexdigest()}" in msg
    assert f"not the expected {FILES['a.gz']}" in msg
    cache = tmp_path / "cache" / "lifelong" / "toy"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_fails_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    with pytest.raises(DataError) as err:
        find_files("toy", FILES, [(tmp_path / "none").as_uri()], None)
    assert "download file://" in str(err.value) and "To get the data" in str(err.value)


# ----------------------------------------------------------------------------- splits


def test_split_exact() -> None:
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    train, test = split_exact(y, n_test=4, purpose="t")
    assert len(test) == 4 and len(train) == 11
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(15))
    counts = np.bincount(y[test], minlength=3)
    np.testing.assert_array_equal(counts, [2, 1, 1])  # quotas 1.87, 1.33, 0.8
    again = split_exact(y, n_test=4, purpose="t")
    np.testing.assert_array_equal(test, again[1])


# ----------------------------------------------------------------------------- real data


def _rng_states() -> tuple[object, torch.Tensor]:
    return np.random.get_state(), torch.get_rng_state()


@needs_mnist
def test_mnist_10k(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELONG_DATA", str(SHARED))
    np_state, torch_state = _rng_states()
    data = idx_sources.load_mnist_10k(None)
    assert data.train_x.shape == (8000, 1, 28, 28) and data.test_x.shape == (2000, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0
    assert set(data.train_y.tolist()) == set(data.test_y.tolist()) == set(range(10))
    assert data.num_classes == 10 and data.image_shape == (1, 28, 28)
    # The official test set's class counts, kept in proportion.
    counts = (data.train_y.bincount() + data.test_y.bincount()).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    again = idx_sources.load_mnist_10k(SHARED / "mnist-t10k")  # explicit data_dir
    assert torch.equal(data.test_x, again.test_x) and torch.equal(data.train_y, again.train_y)
    after = _rng_states()
    assert torch.equal(after[1], torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(after[0], np_state, strict=True))  # type: ignore[call-overload]


@needs_mnist
@pytest.mark.parametrize("name", ["mnist", "mnist-10k"])  # the full set's folder, the source's
def test_mnist_10k_accepts_other_folder_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              name: str) -> None:
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True)
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / f).symlink_to(SHARED / "mnist-t10k" / f)  # links, never copies
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "data"))
    assert idx_sources.load_mnist_10k(None).test_x.shape == (2000, 1, 28, 28)


@needs_fashion
def test_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELONG_DATA", str(SHARED))
    assert {"fashion-mnist", "mnist", "mnist-10k"} <= set(SOURCES.names())
    data = SOURCES.get("fashion-mnist")(None)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_y.bincount().tolist() == [6000] * 10
    assert data.test_y.bincount().tolist() == [1000] * 10
    assert 0.0 <= float(data.test_x.min()) and float(data.test_x.max()) <= 1.0
