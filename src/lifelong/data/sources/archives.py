"""Datasets that ship as one ``.tar.gz`` archive: download, verify, extract atomically.

Owns getting a folder of an archive into the download cache ``cache_root()/<name>/``:

- The archive is downloaded with `locate.download` (mirrors in order, SHA-256 checked while
  it streams, written atomically); a download with the wrong checksum is discarded with an
  error, and a cached archive whose checksum is wrong is deleted and downloaded again.
- Only the members under one folder of the archive (``member_prefix``) are extracted, into a
  temporary folder beside the target that is then renamed into place with `os.replace`: a
  killed extraction leaves a ``.extract-*`` folder, never a half folder that looks complete.
- Unsafe members are refused before anything is written: absolute paths, ``..``, links,
  devices. Python's ``tarfile`` ``filter="data"`` (3.11.4+) is applied as a second guard.
- ``LIFELONG_OFFLINE=1`` disables the download; the error says where to put the archive.

Does not own where else a dataset may lie (user folders, ``$LIFELONG_DATA``): callers search
those first (see `babi`) and come here for the cache only. Does not check the extracted
files: callers that know per-file checksums check them.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from lifelong.data.sources.locate import cache_root, download, offline, sha256_of
from lifelong.errors import DataError


def ensure_extracted(
    name: str, archive_name: str, urls: Sequence[str], sha256: str, member_prefix: str
) -> Path:
    """The folder ``cache_root()/name/member_prefix``, extracted from the archive if needed.

    Args:
        name: the dataset's cache folder name, e.g. ``"babi"``.
        archive_name: the archive's file name, e.g. ``"tasks_1-20_v1-2.tar.gz"``.
        urls: base URLs tried in order; the archive's URL is ``base + "/" + archive_name``.
        sha256: the official archive's SHA-256 (hex).
        member_prefix: the folder inside the archive to extract, e.g. ``"tasks_1-20_v1-2/en"``.

    Raises:
        DataError: offline and the archive is not cached; every mirror failed; the download
            has the wrong checksum (it is deleted); the archive is unreadable, holds an unsafe
            member, or has nothing under `member_prefix`.
    """
    cache = cache_root() / name
    target = cache.joinpath(*PurePosixPath(member_prefix).parts)
    if target.is_dir():  # present only after a complete extraction (see module docstring)
        return target
    archive = cache / archive_name
    notes: list[str] = []
    if archive.is_file() and (actual := sha256_of(archive)) != sha256:
        archive.unlink()
        notes.append(f"{archive}: sha256 {actual} is not the official {sha256}; the corrupt "
                     "copy was deleted")
    if not archive.is_file():
        _fetch(name, archive, urls, sha256, notes)
    _extract(archive, cache, member_prefix, target)
    return target


def _fetch(name: str, archive: Path, urls: Sequence[str], sha256: str, notes: list[str]) -> None:
    if offline():
        source = f"{urls[0].rstrip('/')}/{archive.name}" if urls else "it"
        raise DataError(
            f"{name}: {archive.name} is not in the download cache and LIFELONG_OFFLINE is set. "
            + "".join(f"{note}. " for note in notes)
            + f"Download {source} and put it at {archive} (it is checked and extracted on the "
            "next run), or unset LIFELONG_OFFLINE to download it")
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{name}: the download cache {archive.parent} cannot be created ({e}); "
                        "set XDG_CACHE_HOME to a writable folder") from None
    got, failures, mismatches = download(archive.name, sha256, urls, archive.parent)
    if mismatches:
        url, actual = mismatches[0]
        raise DataError(
            f"{name}: the download from {url} has sha256 {actual}, not the official {sha256}; "
            "it was deleted. The mirror may have changed or the transfer was altered (a "
            f"proxy?): try again later, or get the official archive yourself and put it at "
            f"{archive}")
    if got is None:
        raise DataError(
            f"{name}: {archive.name} could not be downloaded:\n"
            + "\n".join(f"  - {line}" for line in [*notes, *failures])
            + f"\nGet it with network access, or download it yourself and put it at {archive}")


def _safe_members(tar: tarfile.TarFile, archive: Path, prefix: str) -> list[tarfile.TarInfo]:
    """The members under `prefix`; `DataError` for any unsafe member in the whole archive."""
    chosen = []
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        problem = ("a link or special file" if not (member.isfile() or member.isdir()) else
                   "a path outside the extraction folder"
                   if path.is_absolute() or ".." in path.parts else "")
        if problem:
            raise DataError(
                f"{archive}: member {member.name!r} is {problem}; refusing to extract this "
                "archive. It is not the official file: delete it and download it again")
        if path == PurePosixPath(prefix) or PurePosixPath(prefix) in path.parents:
            chosen.append(member)
    if not any(m.isfile() for m in chosen):
        raise DataError(f"{archive}: holds no file under {prefix}/; it is not the expected "
                        "archive: delete it and download it again")
    return chosen


def _extract(archive: Path, cache: Path, prefix: str, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, archive, prefix)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.11.4: the members were checked above
                tar.extractall(tmp, members=members)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp.joinpath(*PurePosixPath(prefix).parts), target)
        except OSError:
            if not target.is_dir():  # another process may have won the race: use its copy
                raise
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: cannot be read as a .tar.gz ({e}); delete it to download "
                        "it again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
