"""The `split` stream: the source's classes divided into disjoint groups, one per task
(Zenke et al. 2017 split MNIST; van de Ven & Tolias 2019 define its three scenarios).

Owns grouping classes into tasks. Default scenario `task` (a head per task); `domain` asks
"first or second class of the pair?" with one head; `class` asks for the global digit.
"""

from __future__ import annotations

import torch

from lifelong.data.builders import STREAMS
from lifelong.data.builders._common import (
    CHECK_ONLY,
    EvaluateOn,
    check_common,
    hold_out,
    load,
    make_stream,
    make_task,
    raise_if,
    subset,
)
from lifelong.data.task import Scenario, Stream


@STREAMS.register("split")
def build_split(
    seed: int,
    *,
    source: str = "digits",
    num_tasks: int | None = None,
    classes_per_task: int = 2,
    class_order: list[int] | None = None,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    scenario: Scenario = "task",
    data_dir: str | None = None,
    validation: float = 0.0,
    evaluate_on: EvaluateOn = "test",
) -> Stream:
    """Split-class tasks.

    Args:
        num_tasks: default all classes / classes_per_task.
        classes_per_task: classes in each task.
        class_order: the order classes are dealt into tasks (default 0, 1, 2, ...).
        validation: share of each task's training examples held out as its validation
            split (drawn from the task's key; 0 = none), for choosing hyper-parameters.
        evaluate_on: ``"validation"`` scores every task on its validation split in place of
            its test set, which is then never read: how a protocol is tuned without its
            test data.
    """
    # What can be checked without the data first (so `check_stream` sees it), then the rest.
    problems = check_common("split", num_tasks=num_tasks if num_tasks is not None else 1,
                            train_per_task=train_per_task, test_per_task=test_per_task,
                            scenario=scenario, validation=validation, evaluate_on=evaluate_on)
    if classes_per_task < 1:
        problems.append(f"stream 'split': classes_per_task={classes_per_task} must be >= 1")
    # class_order's problems are reported together: repeats and negative ids (wrong for any
    # source) before the data loads, so `check_stream` sees them, unknown ids with the source.
    order_problems = _order_problems(class_order, None, source)
    if problems or CHECK_ONLY.get():
        raise_if(problems + order_problems)
    src = load(source, data_dir)
    order = list(class_order) if class_order is not None else list(range(src.num_classes))
    n_tasks = num_tasks if num_tasks is not None else len(order) // classes_per_task
    problems = _order_problems(class_order, src.num_classes, source)
    if not problems and (n_tasks < 1 or n_tasks * classes_per_task > len(order)):
        where = "class_order lists" if class_order is not None else f"{source} has"
        problems.append(f"stream 'split': {n_tasks} tasks x {classes_per_task} classes need "
                        f"{n_tasks * classes_per_task} classes but {where} {len(order)}")
    raise_if(problems)
    tasks = []
    for i in range(n_tasks):
        classes = order[i * classes_per_task:(i + 1) * classes_per_task]
        key = f"split/{source}/{'-'.join(map(str, classes))}"
        wanted = torch.tensor(classes)
        on_val = evaluate_on == "validation" and validation > 0
        tr_all = torch.isin(src.train_y, wanted).nonzero().squeeze(1)
        # Tuning on the validation split never reads the test set, not even its labels.
        te_all = None if on_val else torch.isin(src.test_y, wanted).nonzero().squeeze(1)
        raise_if([f"stream 'split': {part}_per_task={want} but classes {classes} of {source} "
                  f"have only {len(have)} {part} examples; lower {part}_per_task"
                  for part, want, have in (("train", train_per_task, tr_all),
                                           ("test", test_per_task, te_all))
                  if want is not None and have is not None and want > len(have)])
        tr = tr_all[subset(len(tr_all), train_per_task, seed, key, "train")]
        tr, va = hold_out(tr, validation, seed, key)
        val = (src.train_x[va], src.train_y[va]) if validation else None
        if te_all is None and val is not None:
            test = val
        else:
            assert te_all is not None
            te = te_all[subset(len(te_all), test_per_task, seed, key, "test")]
            test = (src.test_x[te], src.test_y[te])
        tasks.append(make_task(
            key=key, index=i, scenario=scenario,
            train=(src.train_x[tr], src.train_y[tr]), test=test, validation=val,
            classes=classes,
        ))
    return make_stream(f"split/{source}", scenario, tasks, src.image_shape)


def _order_problems(class_order: list[int] | None, num_classes: int | None,
                    source: str) -> list[str]:
    """What is wrong with `class_order`: classes listed more than once, and classes the source
    does not have (only the negative ones while `num_classes` is unknown)."""
    if class_order is None:
        return []
    out = []
    twice = sorted({c for c in class_order if class_order.count(c) > 1})
    if twice:
        out.append(f"stream 'split': class_order={class_order} lists class"
                   f"{'es' if len(twice) > 1 else ''} {', '.join(map(str, twice))} more than "
                   "once; list each class at most once")
    valid = range(num_classes if num_classes is not None else max(class_order, default=0) + 1)
    unknown = sorted({c for c in class_order if c not in valid})
    if unknown:
        have = (f"{source} has classes 0..{num_classes - 1}" if num_classes is not None
                else "class ids start at 0")
        out.append(f"stream 'split': class_order={class_order} has unknown class"
                   f"{'es' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))}; "
                   f"{have}")
    return out
