"""The `babi` stream: the 20 bAbI question-answering tasks (Weston et al. 2015), one after the
other, as in-memory tasks every strategy runs on unchanged.

Owns turning the encoded tasks of `lifelong.data.sources.babi` into `Task` values: inputs are
pairs ``(story, question)`` of int32 token-id tensors, labels are answer ids of one answer
vocabulary shared by all tasks. Default scenario `domain`: one answer head for every task (the
lecture's bAbI figure); `task` gives each task its own head over the same answers. Class-IL
does not apply: answers ("yes", "kitchen") recur across tasks, so tasks do not bring disjoint
classes.

Each task keeps a validation split of its training questions (10 % by default, the paper's
held-out set, Sukhbaatar et al. 2015 §4.2), drawn from the task's key alone: it is the same for
every seed and every order of the stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.data.builders import STREAMS
from lifelong.data.builders._common import CHECK_ONLY, OptionsChecked, raise_if, subset
from lifelong.data.sources.babi import BabiSplit, load_babi
from lifelong.data.sources.babi_files import SUBFOLDERS
from lifelong.data.task import Scenario, Stream, Task, TensorData
from lifelong.seeding import generator

NUM_TASKS = 20


@STREAMS.register("babi")
def build_babi(
    seed: int,
    *,
    size: str = "1k",
    tasks: list[int] | None = None,
    num_tasks: int | None = None,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    memory_size: int = 50,
    fit_memory: bool = False,
    validation: float = 0.1,
    scenario: Scenario = "domain",
    outputs: str = "answers",
    data_dir: str | None = None,
) -> Stream:
    """bAbI tasks in the order of `tasks` (default 1, 2, ..., 20).

    Args:
        size: ``"1k"`` or ``"10k"`` training questions per task.
        tasks: task numbers (1–20) in training order.
        num_tasks: keep only the first `num_tasks` of `tasks`.
        train_per_task, test_per_task: a key-seeded subset of each task's questions (all if
            null); the training subset is drawn after the validation split.
        memory_size: the last statements kept before each question (the paper's 50).
        fit_memory: keep only as many memory slots as the longest story of the stream's
            training files holds before a question, at most `memory_size`, as the authors'
            released code sizes its memory (tasks 9 and 10: 10 slots). It matters to a
            model that attends its empty slots (`memnet`'s ``attend_empty``): each takes
            attention mass. A test question whose supporting statement falls outside the
            kept slots is an error, as with `memory_size`.
        validation: the share of each task's training questions held out (0 = none).
        outputs: ``"answers"`` (default): the answers seen in training are the classes.
            ``"words"``: every word of the vocabulary is a class too (the answers keep their
            ids, the other words follow), as in the paper, whose answer matrix W has a row
            per word and whose softmax runs over the whole vocabulary (Sukhbaatar et al.
            2015, §2.1). On the bAbI validation split it did not help MemN2N (see the
            README), so it is an option, not the default.
    """
    order = list(tasks) if tasks is not None else list(range(1, NUM_TASKS + 1))
    problems = _problems(size, order, num_tasks, train_per_task, test_per_task, memory_size,
                         validation, scenario, outputs)
    if not isinstance(fit_memory, bool):
        problems.append(f"stream 'babi': fit_memory={fit_memory!r} must be true or false")
    raise_if(problems)
    if CHECK_ONLY.get():
        raise OptionsChecked
    if num_tasks is not None:
        order = order[:num_tasks]
    data = load_babi(tuple(order), size=size, memory_size=memory_size, data_dir=data_dir)
    if fit_memory:
        longest = max(int(bt.train.story.ne(0).any(2).sum(1).max()) for bt in data.tasks)
        if longest < memory_size:  # encoded again with fewer slots (and checked again)
            data = load_babi(tuple(order), size=size, memory_size=max(longest, 1),
                             data_dir=data_dir)
    names = data.answers
    if outputs == "words":  # the answers keep their ids; the other words follow
        known = set(names)
        names = (*names, *(w for w in data.vocabulary[2:] if w not in known))
    classes = tuple(range(len(names)))
    out = []
    for index, bt in enumerate(data.tasks):
        key = f"babi/{size}/{bt.number}"
        train = _data(bt.train, index)
        held = torch.zeros(len(train), dtype=torch.bool)
        n_val = round(validation * len(train))
        held[torch.randperm(len(train), generator=generator("validation", key))[:n_val]] = True
        valid = train.take(held.nonzero().squeeze(1)) if n_val else None
        train = train.take((~held).nonzero().squeeze(1))
        train = train.take(subset(len(train), train_per_task, seed, key, "train"))
        test = _data(bt.test, index)
        test = test.take(subset(len(test), test_per_task, seed, key, "test"))
        out.append(Task(key, index, train, test, classes, valid))
    shape = ((data.memory_size, data.sentence_length), (data.sentence_length,))
    return Stream(f"babi/{size}", scenario, tuple(out), len(classes), len(classes), shape,
                  data.vocabulary, names)


def _data(split: BabiSplit, index: int) -> TensorData:
    # Token ids as int32 (the vocabulary is small): half the memory of int64 for stories of
    # 50 x 11 words (1k: 88 MB instead of 176 MB for all 20 tasks; 10k: 0.9 GB, not 1.8 GB).
    y: Tensor = split.answer
    return TensorData((split.story.to(torch.int32), split.query.to(torch.int32)), y,
                      torch.full_like(y, index))


def _problems(size: str, order: list[int], num_tasks: int | None, train_per_task: int | None,
              test_per_task: int | None, memory_size: int, validation: float,
              scenario: str, outputs: str) -> list[str]:
    out = []
    if size not in SUBFOLDERS:
        out.append(f"stream 'babi': size={size!r} must be one of {', '.join(SUBFOLDERS)}")
    bad = [t for t in order if not isinstance(t, int) or not 1 <= t <= NUM_TASKS]
    if bad or not order:
        out.append(f"stream 'babi': tasks={order} must list task numbers 1..{NUM_TASKS}"
                   + (f" (not {bad})" if bad else ""))
    elif len(set(order)) != len(order):
        out.append(f"stream 'babi': tasks={order} lists a task more than once")
    if num_tasks is not None and (not isinstance(num_tasks, int)
                                  or not 1 <= num_tasks <= len(order)):
        out.append(f"stream 'babi': num_tasks={num_tasks!r} must be 1..{len(order)}")
    for name, value in (("train_per_task", train_per_task), ("test_per_task", test_per_task)):
        if value is not None and (not isinstance(value, int) or value < 1):
            out.append(f"stream 'babi': {name}={value!r} must be a positive integer or null")
    if not isinstance(memory_size, int) or memory_size < 1:
        out.append(f"stream 'babi': memory_size={memory_size!r} must be a positive integer")
    if not isinstance(validation, (int, float)) or not 0 <= validation < 1:
        out.append(f"stream 'babi': validation={validation!r} must be in [0, 1) (0 = none)")
    if scenario not in ("domain", "task"):
        out.append(f"stream 'babi': scenario={scenario!r} must be 'domain' (one answer head, "
                   "the default) or 'task' (a head per task); answers recur across tasks, so "
                   "the class-incremental scenario does not apply")
    if outputs not in ("words", "answers"):
        out.append(f"stream 'babi': outputs={outputs!r} must be 'answers' (the training "
                   "answers are the classes; the default) or 'words' (every word is a class "
                   "too, as in the paper)")
    return out
