"""bAbI question answering: the 20 English tasks, parsed and encoded as padded tensors.

The tasks of Weston et al., "Towards AI-Complete Question Answering: A Set of Prerequisite Toy
Tasks" (2015, arXiv:1502.05698), v1.2, with 1k or 10k training questions per task. Owns
parsing the files strictly and encoding them as int64 tensors held in memory; `babi_files`
finds the files (user folder, ``$LIFELONG_DATA``, download) and checks them. Does not own
tasks, streams or models built on them.

File format: each line is ``N sentence``; ``N`` restarts at 1 for a new story; a question line
is ``N question?<TAB>answer<TAB>supporting sentence numbers``, the answer's words separated by
commas. Encoding, following End-To-End Memory Networks (Sukhbaatar et al., 2015, §4.2):

- Tokens: lower-cased, split on whitespace; a trailing ``.`` or ``?`` is punctuation, not a
  word. Questions are not written into the story memory: each question sees the statements of
  its story before it, only the last ``memory_size`` of them (default 50, as in §4.2).
- ``story`` (N, memory_size, sentence_length): row 0 is the most recent statement, row 1 the
  one before; rows before the story's start and slots past a sentence's end are 0 (padding).
- One word vocabulary per set (1k or 10k): the words of the statements and questions of all 20
  *training* files, sorted, after ``<pad>`` = 0 and ``<unk>`` = 1, whatever tasks are asked
  for, so a word's id never depends on which tasks a stream holds. Other words (in test files
  or a user's own files) become ``<unk>``; the official 1k test files have none.
- Answers are classes, one per whole answer string (``"apple,football"`` is one class).
  ``answers`` holds the sorted answers of all 20 training files after ``<unk>`` = 0. An answer
  no training question has becomes class 0, which no training example teaches, so the
  question is in effect scored as wrong: a classifier over training answers cannot give it
  (in the 1k set: one test question of task 8, ``football,apple,milk``).
- ``sentence_length`` is the longest statement or question of the training files (11 words in
  the 1k set); a longer sentence elsewhere is an error, never silently truncated.

A question whose supporting statement lies further back than the kept ``memory_size``
statements cannot be answered: that is an error saying how large ``memory_size`` must be. On
the official 1k data the farthest supporting statement is 40 back, so 50 never fires.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from lifelong.data.sources import locate
from lifelong.data.sources.babi_files import SUBFOLDERS, TASK_NAMES, find_babi, task_file
from lifelong.errors import ConfigError, DataError

PAD, UNK = "<pad>", "<unk>"
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Example:
    """One question of a file, as parsed (see `parse_file`)."""

    statements: tuple[tuple[str, ...], ...]  # its story's statements before it, oldest first
    question: tuple[str, ...]
    answer: tuple[str, ...]  # the answer's words: ("apple", "football") for "apple,football"
    supporting: tuple[int, ...]  # positions in `statements` of the supporting statements
    line: int  # 1-based line number of the question in its file


@dataclass(frozen=True, slots=True)
class BabiSplit:
    """Encoded questions: story (N, M, L), query (N, L), answer (N,), all int64."""

    story: Tensor
    query: Tensor
    answer: Tensor


@dataclass(frozen=True, slots=True)
class BabiTask:
    number: int  # 1..20
    name: str  # e.g. "single-supporting-fact"
    train: BabiSplit
    test: BabiSplit


@dataclass(frozen=True, slots=True)
class Babi:
    """Requested tasks with the set's shared vocabularies (see the module docstring)."""

    size: str
    vocabulary: tuple[str, ...]  # word id -> word; 0 = <pad>, 1 = <unk>
    answers: tuple[str, ...]  # answer class -> answer string; 0 = <unk>
    memory_size: int
    sentence_length: int
    tasks: tuple[BabiTask, ...]


@dataclass(slots=True)
class _Parsed:
    """A file as flat lists: every statement once, questions pointing into them."""

    path: Path
    statements: list[list[str]]
    statement_lines: list[int]
    questions: list[list[str]]
    question_lines: list[int]
    answers: list[str]
    supporting: list[list[int]]  # indices into `statements`
    starts: list[int]  # index of the question's story's first statement
    ends: list[int]  # one past the last statement the question sees


_TRAILING_PUNCTUATION = re.compile(r"[.?]+(?=\s|$)")


def _bad(path: Path, lineno: int, problem: str, fix: str) -> DataError:
    return DataError(f"{path}:{lineno}: {problem}; {fix}")


def _parse(path: Path) -> _Parsed:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    p = _Parsed(path, [], [], [], [], [], [], [], [])
    previous, start = 0, 0
    statement_of: dict[int, int] = {}  # the story's line numbers -> index in p.statements
    # Tokens: lower-cased, a word's trailing "." and "?" dropped. One regex call for the whole
    # file is several times faster than word by word, and changes no line break.
    clean = _TRAILING_PUNCTUATION.sub(" ", text.lower())
    for lineno, line in enumerate(clean.splitlines(), 1):
        number, _, rest = line.partition(" ")
        if not (number.isascii() and number.isdigit()):
            original = text.splitlines()[lineno - 1]
            raise _bad(path, lineno, f"{original[:40]!r} does not start with a sentence number",
                       "every line is 'N sentence' (no blank lines)")
        n = int(number)
        if n == 1:
            start, statement_of = len(p.statements), {}
        elif n != previous + 1:
            raise _bad(path, lineno, f"sentence number {n} follows {previous}",
                       "number a story's lines 1, 2, 3, ... and start a new story at 1")
        previous = n
        if "\t" not in rest:
            if not (tokens := rest.split()):
                raise _bad(path, lineno, "the statement has no words", "write it or remove it")
            statement_of[n] = len(p.statements)
            p.statements.append(tokens)
            p.statement_lines.append(lineno)
            continue
        fields = rest.split("\t")
        if len(fields) != 3:
            raise _bad(path, lineno, f"the question line has {len(fields)} tab-separated "
                       "fields, not 3", "write 'N question?<TAB>answer<TAB>supporting numbers'")
        question, answer, support = fields[0].split(), fields[1].strip(), fields[2]
        if not question:
            raise _bad(path, lineno, "the question has no words",
                       "write the question before the first tab")
        if not answer or "" in (words := [w.strip() for w in answer.split(",")]):
            raise _bad(path, lineno, f"the question has no answer ({fields[1]!r} after the tab)",
                       "put the answer after the first tab, several words separated by commas")
        ids = support.split()
        if not all(i.isascii() and i.isdigit() and int(i) in statement_of for i in ids):
            raise _bad(path, lineno, f"the supporting sentences {support!r} are not all "
                       "earlier statements of this story", "give their line numbers N")
        p.questions.append(question)
        p.question_lines.append(lineno)
        p.answers.append(",".join(words))
        p.supporting.append([statement_of[int(i)] for i in ids])
        p.starts.append(start)
        p.ends.append(len(p.statements))
    return p


def parse_file(path: str | Path) -> list[Example]:
    """Every question of a bAbI file with the statements it sees (none left out).

    Raises:
        DataError: a malformed line, naming the file, the line and the fix.
    """
    p = _parse(Path(path))
    statements = [tuple(s) for s in p.statements]
    return [Example(tuple(statements[b:e]), tuple(q), tuple(a.split(",")),
                    tuple(i - b for i in sup), line)
            for q, a, sup, b, e, line in zip(p.questions, p.answers, p.supporting, p.starts,
                                             p.ends, p.question_lines, strict=True)]


def load_babi(tasks: Sequence[int] = range(1, 21), *, size: str = "1k", memory_size: int = 50,
              data_dir: str | Path | None = None) -> Babi:
    """Load and encode bAbI tasks (see the module docstring for where and how).

    Cached per process: the tensors are shared between calls, treat them as read-only.

    Args:
        tasks: task numbers from 1 to 20, in the order wanted.
        size: ``"1k"`` or ``"10k"`` training questions per task.
        memory_size: statements kept before each question (the most recent ones).
        data_dir: a folder holding the user's own copy of the 40 files.

    Raises:
        ConfigError: a bad argument.
        DataError: files missing, corrupt or malformed (naming the file, line and fix).
    """
    numbers = tuple(tasks)
    problems = []
    if size not in SUBFOLDERS:
        problems.append(f"bAbI size {size!r} is not one of: {', '.join(SUBFOLDERS)}")
    if not numbers or len(set(numbers)) < len(numbers) or not all(
            isinstance(t, int | np.integer) and not isinstance(t, bool) and 1 <= t <= 20
            for t in numbers):
        problems.append(f"bAbI tasks {list(numbers)} must be distinct numbers from 1 to 20")
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
        problems.append(f"bAbI memory_size {memory_size!r} must be a positive integer")
    if problems:
        raise ConfigError(problems)
    # Where the data is searched is part of the key, so a changed LIFELONG_DATA is seen.
    return _load(tuple(int(t) for t in numbers), size, memory_size,
                 None if data_dir is None else str(Path(data_dir).expanduser()),
                 os.environ.get("LIFELONG_DATA"), locate.SYSTEM_DIRS, locate.cache_root())


@functools.lru_cache(maxsize=4)
def _load(numbers: tuple[int, ...], size: str, memory_size: int, data_dir: str | None,
          *search: object) -> Babi:
    folder = find_babi(size, data_dir)
    train = [_parse(task_file(folder, n, "train")) for n in range(1, len(TASK_NAMES) + 1)]
    test = {n: _parse(task_file(folder, n, "test")) for n in numbers}
    words = {w for p in train for s in (*p.statements, *p.questions) for w in s}
    vocabulary = (PAD, UNK, *sorted(words - {PAD, UNK}))
    answers = (UNK, *sorted({a for p in train for a in p.answers} - {UNK}))
    length = max((len(s) for p in train for s in (*p.statements, *p.questions)), default=1)
    _check_memory([*(train[n - 1] for n in numbers), *test.values()], memory_size)
    word_ids = {w: i for i, w in enumerate(vocabulary)}
    answer_ids = {a: i for i, a in enumerate(answers)}

    def encode(p: _Parsed) -> BabiSplit:
        statements = _matrix(p.statements, p.statement_lines, p.path, word_ids, length)
        # Row r of `statements` is statement r - 1 (row 0 is padding); row k of a story is the
        # k-th most recent statement, padding once it would reach before the story's start.
        rows = np.asarray(p.ends, np.int64)[:, None] - np.arange(memory_size)
        rows = np.where(rows > np.asarray(p.starts, np.int64)[:, None], rows, 0)
        query = _matrix(p.questions, p.question_lines, p.path, word_ids, length)[1:]
        answer = np.fromiter((answer_ids.get(a, 0) for a in p.answers), np.int64, len(p.answers))
        return BabiSplit(torch.from_numpy(statements[rows]), torch.from_numpy(query),
                         torch.from_numpy(answer))

    return Babi(size, vocabulary, answers, memory_size, length, tuple(
        BabiTask(n, TASK_NAMES[n - 1], encode(train[n - 1]), encode(test[n])) for n in numbers))


def _matrix(sentences: list[list[str]], lines: list[int], path: Path, word_ids: dict[str, int],
            length: int) -> IntArray:
    """Token ids, one sentence per row from row 1 on, padded with 0; row 0 is all padding."""
    lengths = np.fromiter(map(len, sentences), np.int64, len(sentences))
    if (too_long := np.flatnonzero(lengths > length)).size:
        i = int(too_long[0])
        raise DataError(f"{path}:{lines[i]}: the sentence has {lengths[i]} words, more than the "
                        f"{length} of the longest training sentence; shorten it (sentences are "
                        "never truncated)")
    out = np.zeros((len(sentences) + 1, length), np.int64)
    flat = [word_ids.get(w, 1) for s in sentences for w in s]
    rows = np.repeat(np.arange(1, len(sentences) + 1), lengths)
    out[rows, np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)] = flat
    return out


def _check_memory(files: list[_Parsed], memory_size: int) -> None:
    """`DataError` if a question's supporting statement is older than the kept statements."""
    needed, first = 0, ""
    for p in files:
        for support, end, line in zip(p.supporting, p.ends, p.question_lines, strict=True):
            back = end - min(support, default=end)
            if back > memory_size and not first:
                first = f"{p.path}:{line}: a supporting statement is {back} statements back"
            needed = max(needed, back)
    if first:
        raise DataError(f"{first}, but only the last {memory_size} are kept, so the question "
                        f"cannot be answered; raise stream.memory_size to at least {needed}")


