"""The `mnist` source: the official checksums, the official 60000 / 10000 split read from the
shared data, and one clear `DataError` when its files are missing or not the official ones
(never a download: LIFELONG_OFFLINE=1)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.data.sources import idx_sources
from lifelong.data.sources.idx_sources import (
    MNIST_FILES,
    TEST_LABELS,
    TRAIN_LABELS,
)
from lifelong.data.sources.locate import sha256_of
from lifelong.errors import DataError

# Read before the fixture below hides it: where the real data are (conftest sets the default).
SHARED_ROOT = Path(os.environ.get("LIFELONG_DATA", "")).expanduser() if os.environ.get(
    "LIFELONG_DATA") else Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_MNIST = SHARED_ROOT / "mnist"


def shared_mnist_or_skip() -> Path:
    missing = [f for f in MNIST_FILES if not (SHARED_MNIST / f).is_file()]
    if missing:
        pytest.skip(f"LIFELONG_DATA ({SHARED_ROOT}) has no full MNIST: {SHARED_MNIST} lacks "
                    f"{', '.join(missing)}; set LIFELONG_DATA to the shared data folder")
    return SHARED_MNIST


pytestmark = pytest.mark.usefixtures("isolated_data")


def test_the_source_s_checksums_are_the_official_ones() -> None:
    folder = shared_mnist_or_skip()
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"{sums} absent: no published checksum list beside the shared MNIST")
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines()
                  if line.strip())
    assert listed == MNIST_FILES
    # and the shared files are those files
    assert {f: sha256_of(folder / f) for f in MNIST_FILES} == MNIST_FILES


def test_mnist_is_60000_train_and_10000_test(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_mnist_or_skip()
    monkeypatch.setenv("LIFELONG_DATA", str(SHARED_ROOT))
    data = idx_sources.load_mnist(None)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.train_y.shape == (60000,)
    assert data.test_x.shape == (10000, 1, 28, 28) and data.test_y.shape == (10000,)
    assert data.num_classes == 10 and data.name == "mnist"
    assert set(data.train_y.unique().tolist()) == set(range(10)) == set(
        data.test_y.unique().tolist())
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0


def test_missing_files_are_one_data_error_naming_every_place(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError) as e:
        idx_sources.load_mnist(None)
    text = str(e.value)
    assert f"{tmp_path / 'data' / 'mnist'} ($LIFELONG_DATA): has 0 of 4 files" in text
    assert "download: disabled by LIFELONG_OFFLINE" in text
    assert idx_sources.MNIST_URLS[0] in text
    assert not (tmp_path / "cache" / "lifelong" / "mnist").exists()  # nothing downloaded


def _copy(tmp_path: Path, *, cut: str | None = None, unzip: str | None = None) -> Path:
    """The shared MNIST files linked into a folder of `tmp_path`, with `cut` a truncated
    copy and `unzip` an unzipped, truncated copy (both small: the label files)."""
    src = shared_mnist_or_skip()
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for f in MNIST_FILES:
        if f == cut:
            raw = (src / f).read_bytes()
            (folder / f).write_bytes(raw[: len(raw) // 2])
        elif f == unzip:
            raw = gzip.decompress((src / f).read_bytes())
            (folder / f.removesuffix(".gz")).write_bytes(raw[:-100])
        else:
            (folder / f).symlink_to(src / f)  # links, never copies of the large files
    return folder


def test_a_truncated_archive_is_one_data_error_and_is_kept(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    folder = _copy(tmp_path, cut=TRAIN_LABELS)
    monkeypatch.setenv("LIFELONG_DATA", str(folder.parent))
    with pytest.raises(DataError) as e:
        idx_sources.load_mnist(None)
    text = str(e.value)
    assert str(folder / TRAIN_LABELS) in text and MNIST_FILES[TRAIN_LABELS] in text
    assert "is not the official file's" in text
    assert (folder / TRAIN_LABELS).is_file()  # a user's folder is never deleted from


def test_a_corrupt_unzipped_copy_is_one_data_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy(tmp_path, unzip=TEST_LABELS)
    monkeypatch.setenv("LIFELONG_DATA", str(folder.parent))
    with pytest.raises(DataError) as e:
        idx_sources.load_mnist(None)
    assert TEST_LABELS.removesuffix(".gz") in str(e.value)


def test_the_cli_reports_a_wrong_file_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(tmp_path, cut=TEST_LABELS)
    monkeypatch.setenv("LIFELONG_DATA", str(folder.parent))
    code = main(["run", "single", "--quick", "--no-progress", "--set", "strategy.name=naive",
                 "--set", "stream.source=mnist", "--store", str(tmp_path / "s.sqlite"),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "is not the official file's" in err and TEST_LABELS in err
