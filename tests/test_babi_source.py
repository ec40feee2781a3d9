"""Tests of the bAbI source: parser, encoding, lookup and checksums, and archive extraction."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from lifelong.data.sources import babi_files, locate
from lifelong.data.sources.archives import ensure_extracted
from lifelong.data.sources.babi import load_babi, parse_file
from lifelong.errors import DataError

REAL = os.environ.get("LIFELONG_DATA")  # set by conftest.py to the shared data when present
STORY = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
         "3 Where is Mary? \tbathroom\t1\n4 Daniel went back to the hallway.\n"
         "5 Mary got the apple there.\n6 What is Mary carrying? \tapple,football\t5\n"
         "1 Sandra travelled to the office.\n2 Where is Sandra? \toffice\t1\n")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the real home, cache, $LIFELONG_DATA, /usr/share or the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    monkeypatch.setenv("LIFELONG_OFFLINE", "1")
    monkeypatch.setattr(locate, "SYSTEM_DIRS", (tmp_path / "system",))


def user_dir(root: Path, test_of_task_1: str = STORY) -> Path:
    """A user's folder with the 40 files: every one is STORY but task 1's test file."""
    root.mkdir(parents=True, exist_ok=True)
    for name in babi_files.FILE_NAMES:
        (root / name).write_text(STORY)
    (root / babi_files.FILE_NAMES[1]).write_text(test_of_task_1)
    return root


def test_parser_stories_questions_supporting_facts_and_multiword_answers(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text(STORY)
    first, second, third = parse_file(tmp_path / "f.txt")
    assert first.statements == (("mary", "moved", "to", "the", "bathroom"),
                                ("john", "went", "to", "the", "hallway"))
    assert (first.question, first.answer, first.supporting, first.line) == (
        ("where", "is", "mary"), ("bathroom",), (0,), 3)
    # Each question sees only the statements before it; questions are not statements.
    assert len(second.statements) == 4 and second.statements[3][:2] == ("mary", "got")
    assert second.answer == ("apple", "football") and second.supporting == (3,)
    # Numbering restarts at 1: a new story, which sees nothing of the one before.
    assert third.statements == (("sandra", "travelled", "to", "the", "office"),)
    assert (third.supporting, third.line) == ((0,), 8)


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("1 Mary moved.\nMary went.\n", 2, "does not start with a sentence number"),
    ("1 Mary moved.\n\n2 John went.\n", 2, "does not start with a sentence number"),
    ("1 Mary moved.\n3 John went.\n", 2, "sentence number 3 follows 1"),
    ("2 Mary moved.\n", 1, "sentence number 2 follows 0"),
    ("1 Mary moved.\n2 Where is Mary? \tbathroom\n", 2, "2 tab-separated fields, not 3"),
    ("1 Mary moved.\n2 Where is Mary? \tx\t1\tmore\n", 2, "4 tab-separated fields, not 3"),
    ("1 Mary moved.\n2 Where is Mary? \t \t1\n", 2, "has no answer"),
    ("1 Mary moved.\n2 Where is Mary? \tx\t3\n", 2, "not all earlier statements"),
    ("1 Mary moved.\n2 Where? \tx\t1\n3 Why? \ty\t2\n", 3, "not all earlier statements"),
    ("1 Mary moved.\n1 Where is Mary? \tx\t1\n", 2, "not all earlier statements"),
])
def test_each_malformed_line_is_one_error_naming_file_and_line(
        tmp_path: Path, text: str, line: int, problem: str) -> None:
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        parse_file(tmp_path / "bad.txt")
    assert str(err.value).startswith(f"{tmp_path / 'bad.txt'}:{line}: ")


def test_vocabulary_padding_and_memory_truncation(tmp_path: Path) -> None:
    folder = user_dir(tmp_path / "mine", "1 Zebra moved to the kitchen.\n"
                                         "2 Where is Zebra? \tkitchen\t1\n")
    data = load_babi([1, 2], memory_size=2, data_dir=folder)
    assert data.vocabulary[:2] == ("<pad>", "<unk>")
    assert list(data.vocabulary[2:]) == sorted(set(data.vocabulary[2:]))
    assert {"mary", "carrying", "sandra"} <= set(data.vocabulary) and "zebra" not in data.vocabulary
    assert data.answers == ("<unk>", "apple,football", "bathroom", "office")
    assert data.sentence_length == 6  # "daniel went back to the hallway"
    ids = {w: i for i, w in enumerate(data.vocabulary)}

    def sentence(*words: str) -> list[int]:
        return [ids[w] for w in words] + [0] * (6 - len(words))

    train = data.tasks[1].train
    assert [t.name for t in data.tasks] == ["single-supporting-fact", "two-supporting-facts"]
    assert train.story.shape == (3, 2, 6) and train.story.dtype == torch.int64
    # Question 1: two statements, the most recent in row 0.
    assert train.story[0].tolist() == [sentence("john", "went", "to", "the", "hallway"),
                                       sentence("mary", "moved", "to", "the", "bathroom")]
    # Question 2 has four statements before it; memory_size=2 keeps the last two.
    assert train.story[1].tolist() == [sentence("mary", "got", "the", "apple", "there"),
                                       sentence("daniel", "went", "back", "to", "the", "hallway")]
    assert train.story[2].tolist() == [sentence("sandra", "travelled", "to", "the", "office"),
                                       [0] * 6]  # a new story: nothing from the one before
    assert train.query[1].tolist() == sentence("what", "is", "mary", "carrying")
    assert train.answer.tolist() == [2, 1, 3]
    # The user's own test file: unknown words are <unk> (1), an unknown answer is class 0.
    test = data.tasks[0].test
    assert test.story[0, 0].tolist() == [1, ids["moved"], ids["to"], ids["the"], 1, 0]
    assert test.query[0].tolist() == [ids["where"], ids["is"], 1, 0, 0, 0]
    assert test.answer.tolist() == [0]


def test_unanswerable_question_longer_sentence_and_missing_files(tmp_path: Path) -> None:
    folder = user_dir(tmp_path / "mine")
    with pytest.raises(DataError, match="raise stream.memory_size to at least 2") as err:
        load_babi([1], memory_size=1, data_dir=folder)
    assert f"{folder / babi_files.FILE_NAMES[0]}:3: " in str(err.value)
    long = user_dir(tmp_path / "long", "1 Mary moved to the very big bathroom today.\n")
    with pytest.raises(DataError, match="has 8 words, more than the 6") as err:
        load_babi([1], data_dir=long)
    assert f"{long / babi_files.FILE_NAMES[1]}:1: " in str(err.value)
    (folder / babi_files.FILE_NAMES[5]).unlink()
    with pytest.raises(DataError, match=f"missing {babi_files.FILE_NAMES[5]}") as err:
        load_babi([1], data_dir=tmp_path / "mine")
    assert "Put the files of the en/ folder of https://" in str(err.value)


@pytest.fixture(scope="module")
def real() -> Path:
    """The shared official 1k files, found through $LIFELONG_DATA (skip only when unset)."""
    if REAL is None:
        pytest.skip("LIFELONG_DATA is not set: no real bAbI data")
    for root in REAL.split(os.pathsep):
        if (Path(root) / "babi" / "en").is_dir():
            return Path(root) / "babi" / "en"
    raise AssertionError(f"LIFELONG_DATA={REAL} is set but holds no babi/en/ folder")


def test_real_1k_data(real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELONG_DATA", str(real.parent.parent))
    data = load_babi()
    assert [t.number for t in data.tasks] == list(range(1, 21))
    assert all(len(t.train.answer) == len(t.test.answer) == 1000 for t in data.tasks)
    # Independently: the words and answers of the 20 training files, punctuation stripped.
    words, answers = set(), set()
    for path in real.glob("*_train.txt"):
        for line in path.read_text().splitlines():
            text, *qa = line.split("\t")
            words |= {w.strip(".?").lower() for w in text.split()[1:]} - {""}
            answers |= {qa[0]} if qa else set()
    assert len(data.vocabulary) == len(words) + 2 == 147
    assert len(data.answers) == len(answers) + 1 == 58
    assert (data.sentence_length, data.tasks[0].train.story.shape) == (11, (1000, 50, 11))
    for task in data.tasks:  # no <unk> word in the official test files
        assert not (task.test.story == 1).any() and not (task.test.query == 1).any()
    first = data.tasks[0].train
    decode = [" ".join(data.vocabulary[i] for i in row if i) for row in first.story[0, :3]]
    assert decode == ["john went to the hallway", "mary moved to the bathroom", ""]
    assert data.answers[int(first.answer[0])] == "bathroom"
    with pytest.raises(DataError, match="at least 40"):  # 50 never fires; 39 does
        load_babi([3], memory_size=39)


def test_corrupted_official_file_is_refused(real: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    copy = shutil.copytree(real, tmp_path / "data" / "babi" / "en")
    victim = copy / "qa5_three-arg-relations_test.txt"
    victim.write_bytes(victim.read_bytes().replace(b"Mary", b"Mbry", 1))
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="is not the official file's") as err:
        load_babi([1])
    assert str(victim) in str(err.value)


def test_nothing_found_offline_lists_every_place(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_babi()
    for expected in ("$LIFELONG_DATA: not set", f"{tmp_path / 'system' / 'babi' / 'en'}",
                     str(tmp_path / "cache" / "lifelong" / "babi" / "tasks_1-20_v1-2.tar.gz"),
                     "LIFELONG_OFFLINE", "LIFELONG_DATA=DIR", "stream.data_dir"):
        assert expected in str(err.value), expected


# ----------------------------------------------------------------------------- archives


def make_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None
                 ) -> str:
    """Write a .tar.gz of `members` (name -> content) and symlinks; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


TOY = {"pkg/en/a.txt": b"a", "pkg/en/sub/b.txt": b"b", "pkg/other/c.txt": b"c"}


def test_download_verify_and_extract_one_folder(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    sha = make_archive(tmp_path / "www" / "toy.tar.gz", TOY)
    cache = tmp_path / "cache" / "lifelong" / "toy"
    cache.mkdir(parents=True)
    (cache / "toy.tar.gz").write_bytes(b"a corrupt earlier download")  # replaced
    url = (tmp_path / "www").as_uri()
    folder = ensure_extracted("toy", "toy.tar.gz", [url], sha, "pkg/en")
    assert folder == cache / "pkg" / "en"
    assert (folder / "sub" / "b.txt").read_bytes() == b"b" and (folder / "a.txt").exists()
    assert not (cache / "pkg" / "other").exists()  # only the folder asked for
    assert sorted(p.name for p in cache.iterdir()) == ["pkg", "toy.tar.gz"]  # no temporaries
    assert ensure_extracted("toy", "toy.tar.gz", [], sha, "pkg/en") == folder  # no download


def test_a_killed_extraction_leaves_no_folder(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sha = make_archive(tmp_path / "cache" / "lifelong" / "toy" / "toy.tar.gz", TOY)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(tarfile.TarFile, "extractall", killed)
        with pytest.raises(KeyboardInterrupt):
            ensure_extracted("toy", "toy.tar.gz", [], sha, "pkg/en")
    cache = tmp_path / "cache" / "lifelong" / "toy"
    assert sorted(p.name for p in cache.iterdir()) == ["toy.tar.gz"]
    assert (ensure_extracted("toy", "toy.tar.gz", [], sha, "pkg/en") / "a.txt").exists()


def test_wrong_checksum_download_is_discarded(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELONG_OFFLINE")
    sha = make_archive(tmp_path / "www" / "toy.tar.gz", TOY)
    with pytest.raises(DataError, match=f"has sha256 {sha}, not the official 0000"):
        ensure_extracted("toy", "toy.tar.gz", [(tmp_path / "www").as_uri()], "0" * 64, "pkg")
    assert list((tmp_path / "cache" / "lifelong" / "toy").iterdir()) == []


@pytest.mark.parametrize(("members", "links", "problem"), [
    ({"pkg/a.txt": b"a", "pkg/../../evil": b"x"}, None, "outside the extraction folder"),
    ({"/tmp/evil": b"x", "pkg/a.txt": b"a"}, None, "outside the extraction folder"),
    ({"pkg/a.txt": b"a"}, {"pkg/link": "/etc/passwd"}, "a link or special file"),
    ({"other/a.txt": b"a"}, None, "holds no file under pkg/"),
])
def test_unsafe_or_wrong_archive_is_refused(tmp_path: Path, members: dict[str, bytes],
                                            links: dict[str, str] | None, problem: str) -> None:
    cache = tmp_path / "cache" / "lifelong" / "toy"
    sha = make_archive(cache / "toy.tar.gz", members, links)
    with pytest.raises(DataError, match=problem):
        ensure_extracted("toy", "toy.tar.gz", [], sha, "pkg")
    assert sorted(p.name for p in cache.iterdir()) == ["toy.tar.gz"]
    assert not (tmp_path / "evil").exists() and not (cache / "evil").exists()


def test_offline_says_where_to_put_the_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="LIFELONG_OFFLINE is set") as err:
        ensure_extracted("toy", "toy.tar.gz", ["https://example.invalid"], "0" * 64, "pkg")
    assert str(tmp_path / "cache" / "lifelong" / "toy" / "toy.tar.gz") in str(err.value)


def test_babi_from_the_cache_heals_a_damaged_extracted_file(
        real: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"tasks_1-20_v1-2/en/{p.name}": p.read_bytes() for p in real.glob("qa*.txt")}
    sha = make_archive(tmp_path / "www" / babi_files.ARCHIVE, files)
    monkeypatch.setattr(babi_files, "ARCHIVE_SHA256", sha)  # our stand-in for the archive
    monkeypatch.setattr(babi_files, "URLS", ((tmp_path / "www").as_uri(),))
    monkeypatch.delenv("LIFELONG_OFFLINE")
    folder = babi_files.find_babi("1k", None)
    assert folder == tmp_path / "cache" / "lifelong" / "babi" / "tasks_1-20_v1-2" / "en"
    (folder / babi_files.FILE_NAMES[0]).write_text("1 tampered.\n")
    assert babi_files.find_babi("1k", None) == folder
    assert (folder / babi_files.FILE_NAMES[0]).read_bytes() == (
        real / babi_files.FILE_NAMES[0]).read_bytes()
