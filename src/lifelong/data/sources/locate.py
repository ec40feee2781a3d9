"""Finding a dataset's files on disk, or downloading them into the cache.

Owns the lookup order, downloads (checksummed, atomic) and the one error that tells a user
every place that was searched and how to get the data. Does not own reading the files (see
`idx`) nor which files a dataset has (see `idx_sources`).

Lookup order for a dataset ``name`` (a folder counts only when it holds *all* the files):

1. ``data_dir`` when given (from ``--set stream.data_dir=...``): the folder itself, then
   ``data_dir/<name>/`` (and each alias). An explicit folder that lacks the files is an error:
   it never falls through to another copy, so a mistyped path cannot go unnoticed.
2. ``$LIFELONG_DATA/<name>/`` (``LIFELONG_DATA`` may list several folders, ``os.pathsep``
   separated).
3. System folders ``/usr/share/datasets/<name>/`` (where Debian's ``dataset-fashion-mnist``
   installs) and ``/usr/local/share/datasets/<name>/``.
4. The download cache ``$XDG_CACHE_HOME/lifelong/<name>/`` (default ``~/.cache/lifelong``);
   files missing there are downloaded from the given base URLs in order, unless
   ``LIFELONG_OFFLINE=1``.

Checksums: every official (``.gz``) file is checked against its SHA-256 wherever it is found
(about 0.1 s for a 26 MB file, once per process): a file in a user's folder that is not the
official one — another dataset's file under this name, an old version — raises `DataError`
and is left alone; a corrupt cached file is deleted and downloaded again; a download with the
wrong checksum is discarded. Unzipped copies in user folders cannot be hashed against the
official archives; the strict IDX checks of `idx.read_idx` (magic number, exact payload size)
still catch truncation and corruption there.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO
from urllib.request import urlopen

from lifelong.errors import DataError
from lifelong.io import atomic_write

log = logging.getLogger(__name__)

# Folders searched after $LIFELONG_DATA; tests replace this so the real /usr/share is not used.
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))
TIMEOUT_S = 30.0  # per socket operation (connect, each read), not for the whole file
_CHUNK = 1 << 20


class _ChecksumMismatch(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def verify_sha256(path: Path, expected: str, folder_kind: str) -> None:
    """Raise `DataError` unless the file at `path` has SHA-256 `expected` (memoised per
    file version, so a process hashes each file once)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    actual = _VERIFIED.get(key) or sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path}: sha256 {actual} is not the official file's {expected}. This {folder_kind} "
            "holds another file under this name (another dataset's, or another version); "
            "replace it with the official file, or point stream.data_dir elsewhere")
    _VERIFIED[key] = actual


def cache_root() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/lifelong``, else ``~/.cache/lifelong``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "lifelong"


def offline() -> bool:
    """Whether downloads are disabled (``LIFELONG_OFFLINE`` set to 1/true/yes/on)."""
    return os.environ.get("LIFELONG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def find_files(
    name: str,
    files: Mapping[str, str],
    urls: Sequence[str],
    data_dir: str | Path | None = None,
    *,
    aliases: Sequence[str] = (),
    apt_package: str | None = None,
) -> dict[str, Path]:
    """Locate every file of a dataset, downloading missing ones into the cache.

    Args:
        name: the dataset's folder name, e.g. ``"fashion-mnist"``.
        files: file name -> expected SHA-256 (hex) of the official file.
        urls: base URLs tried in order; a file's URL is ``base + "/" + file name``.
        data_dir: an explicit folder (see the module docstring); ``None`` searches the
            default places.
        aliases: other folder names that may hold the same files (e.g. ``"mnist"``).
        apt_package: a Debian/Ubuntu package that installs the files into
            ``/usr/share/datasets/<name>/``, mentioned when nothing is found.

    Returns:
        File name -> path of an existing file. In user folders a ``.gz`` file may be found
        as its unzipped copy (same name without ``.gz``).

    Raises:
        DataError: the files are not in `data_dir`; or they are nowhere and cannot be
            downloaded (one message listing every place looked and how to get the data); or a
            cached or downloaded file has the wrong checksum (it is deleted).
    """
    folders = (name, *aliases)
    if data_dir is not None:
        return _in_explicit_dir(name, files, urls, Path(data_dir).expanduser(), folders)

    looked: list[str] = []
    roots = [Path(p).expanduser() for p in os.environ.get("LIFELONG_DATA", "").split(os.pathsep)
             if p]
    if not roots:
        looked.append("$LIFELONG_DATA: not set")
    for root in [*roots, *SYSTEM_DIRS]:
        if root in roots and root.exists() and not root.is_dir():
            looked.append(f"{root} ($LIFELONG_DATA): a file, not a folder; set LIFELONG_DATA "
                          "to the folder that holds <dataset>/ folders")
            continue
        for folder in folders:
            found, note = _complete(root / folder, files)
            if found is not None:
                return _checked(found, files, "folder")
            tag = " ($LIFELONG_DATA)" if root in roots else ""
            looked.append(f"{root / folder}{tag}: {note}")
    return _from_cache(name, files, urls, cache_root() / name, looked, apt_package)


def _complete(folder: Path, files: Mapping[str, str]) -> tuple[dict[str, Path] | None, str]:
    """All files in `folder` (each as given or unzipped), else None and what is missing."""
    if not folder.is_dir():
        return None, "no such folder"
    found: dict[str, Path] = {}
    for fname in files:
        for candidate in (fname, fname.removesuffix(".gz")):
            if (folder / candidate).is_file():
                found[fname] = folder / candidate
                break
    missing = [f for f in files if f not in found]
    if not missing:
        return found, ""
    return None, f"has {len(found)} of {len(files)} files (missing {', '.join(missing)})"


def _checked(found: dict[str, Path], files: Mapping[str, str],
             folder_kind: str) -> dict[str, Path]:
    """`found`, after checking every file that is the official archive itself."""
    for fname, path in found.items():
        if path.name == fname and files[fname]:
            verify_sha256(path, files[fname], folder_kind)
    return found


def _in_explicit_dir(
    name: str, files: Mapping[str, str], urls: Sequence[str], data_dir: Path,
    folders: Sequence[str],
) -> dict[str, Path]:
    looked = []
    for folder in [data_dir, *(data_dir / f for f in folders)]:
        found, note = _complete(folder, files)
        if found is not None:
            return _checked(found, files, "data_dir")
        looked.append(f"  - {folder}: {note}")
    raise DataError(
        f"{name}: data_dir {data_dir} does not hold the data files. Looked in:\n"
        + "\n".join(looked)
        + f"\nPut {', '.join(files)} (from {urls[0] if urls else 'the official site'}) in "
        f"{data_dir} or {data_dir / name}, fix the path, or leave stream.data_dir unset to "
        "search $LIFELONG_DATA, the system folders and the cache, and to download "
        "automatically"
    )


def _from_cache(
    name: str, files: Mapping[str, str], urls: Sequence[str], cache: Path, looked: list[str],
    apt_package: str | None,
) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for fname, expected in files.items():
        path = cache / fname
        if path.is_file():
            actual = sha256_of(path)
            if actual != expected:  # corrupt: delete it, and download it again below
                path.unlink(missing_ok=True)
                looked.append(f"{path}: sha256 {actual} is not the expected {expected}; the "
                              "corrupt copy was deleted")
                continue
            found[fname] = path
    if len(found) == len(files):
        return found
    missing = [f for f in files if f not in found]
    note = (f"has {len(found)} of {len(files)} files (missing {', '.join(missing)})"
            if cache.is_dir() else "no such folder")
    looked.append(f"{cache} (download cache): {note}")
    if offline():
        looked.append("download: disabled by LIFELONG_OFFLINE")
        raise _not_found(name, files, urls, cache, looked, apt_package)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DataError(
            f"{name}: the download cache {cache} cannot be written ({e}). Set XDG_CACHE_HOME "
            "to a writable folder, or get the files yourself and pass "
            "--set stream.data_dir=FOLDER") from None
    for fname, expected in files.items():
        if fname in found:
            continue
        got, failures, mismatches = download(fname, expected, urls, cache)
        if got is None:
            if mismatches:
                url, actual = mismatches[0]
                raise DataError(
                    f"{name}/{fname}: the download from {url} has sha256 {actual}, not the "
                    f"expected {expected}; it was deleted. The mirror may have changed or the "
                    "transfer was altered (a proxy?) — try again later, or get the official "
                    "file yourself and pass --set stream.data_dir=FOLDER"
                )
            looked.extend(failures)
            raise _not_found(name, files, urls, cache, looked, apt_package)
        found[fname] = got
    return found


def download(
    fname: str, expected: str, urls: Sequence[str], folder: Path
) -> tuple[Path | None, list[str], list[tuple[str, str]]]:
    """Download `fname` into `folder` from the first base URL that serves it.

    Each URL is ``base + "/" + fname`` (``file://`` URLs work too). The file is written
    atomically and only when its SHA-256 is `expected`, so `folder` never holds a partial or
    wrong file. Returns (path or None, failure notes, (url, bad sha256) pairs).
    """
    failures: list[str] = []
    mismatches: list[tuple[str, str]] = []
    target = folder / fname
    for base in urls:
        url = base.rstrip("/") + "/" + fname
        try:
            log.info("downloading %s to %s", url, target)
            with urlopen(url, timeout=TIMEOUT_S) as response:

                def write(fh: IO[bytes], src: IO[bytes] = response,
                          length: str | None = response.headers.get("Content-Length")) -> None:
                    h, size = hashlib.sha256(), 0
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        fh.write(chunk)
                        size += len(chunk)
                    if length is not None and length.isdigit() and size != int(length):
                        raise OSError(f"transfer cut off after {size} of {length} bytes")
                    if h.hexdigest() != expected:
                        raise _ChecksumMismatch(h.hexdigest())

                atomic_write(target, write)  # the temporary file is removed on any error
            return target, failures, mismatches
        except _ChecksumMismatch as e:
            mismatches.append((url, e.actual))
            failures.append(f"download {url}: wrong sha256 {e.actual}")
        except (OSError, ValueError, http.client.HTTPException) as e:
            failures.append(f"download {url}: {e}")
    if not urls:
        failures.append(f"download {fname}: no URL known")
    return None, failures, mismatches


def _not_found(
    name: str, files: Mapping[str, str], urls: Sequence[str], cache: Path, looked: list[str],
    apt_package: str | None,
) -> DataError:
    ways = []
    if apt_package:
        ways.append(
            f"on Debian/Ubuntu: sudo apt-get install {apt_package} (installs into "
            f"/usr/share/datasets/{name}/)"
        )
    source = f" from {urls[0]}" if urls else ""
    ways.append(
        f"download {', '.join(files)}{source} into a folder and pass "
        f"--set stream.data_dir=FOLDER, or put them in DIR/{name}/ and set LIFELONG_DATA=DIR"
    )
    online = "unset LIFELONG_OFFLINE and " if offline() else ""
    ways.append(f"{online}run again with network access: they are downloaded into {cache}")
    return DataError(
        f"{name}: the data files were not found and could not be downloaded. Looked in:\n"
        + "\n".join(f"  - {entry}" for entry in looked)
        + "\nTo get the data, either:\n"
        + "\n".join(f"  - {way}" for way in ways)
    )
