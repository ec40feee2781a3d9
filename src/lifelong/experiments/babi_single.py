"""`babi-single`: MemN2N trained on each bAbI task alone, against the paper's Table 1 (1k).

Each task is its own one-task stream; every task runs with 10 seeds (0-9) and, as in the paper
(Sukhbaatar et al. 2015, §4.2: each training repeated 10 times, the run with the lowest
training error picked), the seed with the lowest training error counts, whatever its
validation or test error.

Configuration: the paper's best column, "PE LS RN": the model's defaults (3 hops, embedding
20, position encoding with the authors' code's weights, temporal encoding, adjacent tying,
the answer matrix tied to C^K) with linear start for the first 20 epochs' batches and random
noise 0.1 (empty memories inserted in training). Training is the paper's: SGD without
momentum, learning rate 0.01 on a loss summed over the batch of 32, gradients clipped to
norm 40, the rate halved every 25 epochs. Our loop averages the loss over the batch, so the
same steps are lr 0.32 and clip 1.25. 120 epochs: the authors' code's 20 of linear start,
then 100. The code runs at half the paper's rate throughout (0.005, restarted after linear
start, halved every 25 epochs); at that rate task 9 was not learned on the validation split.
`--set model.position_encoding=false --set model.linear_start=0 --set model.random_noise=0`
runs the bag-of-words column ("BoW").

The memory is the authors' code's (MemN2N-babi-matlab): as many slots as the task's longest
training story holds statements, at most 50 (`stream.fit_memory`), and the empty ones are
attended as zero memories (`model.attend_empty`), so that a statement that matches the
question weakly leaves attention on nothing. On the validation split this is what the yes/no
tasks (6, 9, 10) needed; `--set model.attend_empty=false --set stream.fit_memory=false`
gives the earlier memory (50 slots, softmax over the statements only).

The protocol was chosen on the validation split (10 % of each task's training questions),
never on the test questions; the README lists the sweeps. The references are the paper's
Table 1 (test error in %, mean over the 20 tasks and task 5); the table prints its per-task
column beside ours ("Table 1"). The per-task errors printed
beside ours ("code re-run") are not the paper's: they are the authors' released code
(MemN2N-babi-matlab, PE LS RN) as re-run by a third party, the benchmark of a public
reimplementation (vinhkhuc/MemN2N-babi-python, benchmarks README).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.plots import new_figure, save

TABLE_1 = ("Sukhbaatar et al. 2015, Table 1 (1k training questions, single-task models, "
           "3 hops, each the best of 10 runs by training error), test error %")
EPOCHS = 120  # the authors' code: 20 epochs of linear start, then 100
LINEAR_EPOCHS = 20  # linear start: the first epochs' batches without the memory softmax
BATCHES = 29  # batches per epoch: 900 training questions (1000 less the validation split)
BATCH = 32
# The paper's rate 0.01 and clip 40 are for a loss summed over the batch; ours is averaged.
LR, CLIP = 0.01 * BATCH, 40.0 / BATCH
# Task -> Table 1's test error, %, single-task models (from TABLE_1).
PAPER_ERRORS = {
    "pe": {1: 0.0, 2: 8.3, 3: 40.3, 4: 2.8, 5: 13.1, 6: 7.6, 7: 17.3, 8: 10.0, 9: 13.2,
           10: 15.1, 11: 0.9, 12: 0.2, 13: 0.4, 14: 1.7, 15: 0.0, 16: 1.3, 17: 51.0,
           18: 11.1, 19: 82.8, 20: 0.0},
    "bow": {1: 0.6, 2: 17.6, 3: 71.0, 4: 32.0, 5: 18.3, 6: 8.7, 7: 23.5, 8: 11.4, 9: 21.1,
            10: 22.8, 11: 4.1, 12: 0.3, 13: 10.5, 14: 1.3, 15: 24.3, 16: 52.0, 17: 45.4,
            18: 48.1, 19: 89.7, 20: 0.1}}
CODE_SOURCE = ("not the paper: the authors' released MemN2N-babi-matlab (PE LS RN, 3 hops) "
               "re-run by a third party, vinhkhuc/MemN2N-babi-python, benchmarks README")
# Task -> test error of the authors' released code, from CODE_SOURCE.
CODE_ERRORS = {1: 0.001, 2: 0.082, 3: 0.418, 4: 0.044, 5: 0.137, 6: 0.079, 7: 0.203,
               8: 0.117, 9: 0.136, 10: 0.097, 11: 0.007, 12: 0.0, 13: 0.003, 14: 0.009,
               15: 0.0, 16: 0.004, 17: 0.51, 18: 0.105, 19: 0.814, 20: 0.0}


@EXPERIMENTS.register("babi-single")
class BabiSingle(Experiment):
    name = "babi-single"
    summary = "MemN2N on each bAbI task alone, best of 10 seeds by training error (Table 1, 1k)"
    strategies = ("naive",)
    options = {"tasks": list(range(1, 21))}
    # A reproduction runs the experiment's own 10 seeds: its number is a selection across
    # them (the best by training error), so it has no spread over seeds.
    reproduce_seeds = None
    spread_over_seeds = False
    references = (
        Reference("PE LS RN: mean test error over the 20 tasks, %", 13.9, TABLE_1, "pe/mean",
                  unit="percent"),
        Reference("PE LS RN: task 5 test error, %", 13.1, TABLE_1, "pe/5", unit="percent"),
        Reference("BoW: mean test error over the 20 tasks, %", 25.1, TABLE_1, "bow/mean",
                  unit="percent"),
        Reference("BoW: task 5 test error, %", 18.3, TABLE_1, "bow/5", unit="percent"),
    )
    protocol_note = ("Ours as the paper: 10 runs per task, the one with the lowest training "
                     "error counts. Departures: linear start for a fixed 20 epochs, as the "
                     "authors' code (the paper: until the validation loss stops falling), at "
                     "the paper's rate 0.01 (the code: 0.005 throughout), which then runs on "
                     "for 100 epochs halving every 25 (the code restarts it after linear "
                     "start). The memory is the code's (the paper does not describe it): as "
                     "many slots as the task's longest training story, empty ones attended as "
                     "zero memories. The per-task column 'code re-run' is the authors' "
                     "released code as re-run by a third party, not the paper's table.")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "babi", "size": "1k", "fit_memory": True},
            "model": {"name": "memnet", "linear_start": LINEAR_EPOCHS * BATCHES,
                      "random_noise": 0.1, "attend_empty": True},
            "strategy": {"name": "naive"},
            "train": {"epochs": EPOCHS, "batch_size": BATCH, "optimizer": "sgd", "lr": LR,
                      "momentum": 0.0, "grad_clip": CLIP, "lr_decay_every": 25,
                      "lr_decay": 0.5, "measure_train": True},
            "options": {"tasks": list(range(1, 21))},
            "seed": list(range(10)),
        }

    def quick(self) -> dict[str, Any]:
        return {"options": {"tasks": [1, 5]}, "train": {"epochs": 25},
                "model": {"linear_start": 5 * BATCHES}, "seed": [0, 1]}

    def check_options(self, options: dict[str, Any]) -> list[str]:
        tasks = options.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(
                isinstance(t, int) and 1 <= t <= 20 for t in tasks):
            return [f"options.tasks={tasks!r} must list bAbI task numbers 1..20"]
        return []

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        base = dict(config.get("stream", {}))
        tasks = config.get("options", {}).get("tasks", self.options["tasks"])
        return [{**base, "tasks": [t]} for t in tasks]

    @staticmethod
    def _best(outcomes: Sequence[Outcome]) -> dict[int, tuple[Outcome, list[Outcome]]]:
        """Per task number: the run with the highest training accuracy (ties: lowest seed),
        and all its runs."""
        by: dict[int, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by[int(o.config["stream"]["tasks"][0])].append(o)
        return {t: (max(runs, key=lambda o: (o.result.diagnostics[0].get("train_accuracy", 0.0),
                                             -o.seed)), runs)
                for t, runs in sorted(by.items())}

    @staticmethod
    def _kind(outcomes: Sequence[Outcome]) -> str:
        model = outcomes[0].config["model"] if outcomes else {}
        return "pe" if model.get("position_encoding", True) else "bow"

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        best = self._best(outcomes)
        if not best:
            return {}
        kind = self._kind(outcomes)
        # Test error in %, the unit of Table 1 and of the references.
        errors = {t: 100 * (1 - o.result.matrix[1][0]) for t, (o, _) in best.items()}
        out = {f"{kind}/{t}": e for t, e in errors.items()}
        if len(errors) == 20:
            out[f"{kind}/mean"] = fmean(errors.values())
        return out

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        best = self._best(outcomes)
        kind = self._kind(outcomes)
        pe = kind == "pe"
        paper = PAPER_ERRORS[kind]
        lines = [f"{'task':>4s} {'test error':>10s} {'Table 1':>7s} {'code re-run':>11s} "
                 f"{'train error':>11s} {'valid error':>11s} {'seed':>4s}  "
                 "test errors of all seeds"]
        errors = []
        for t, (o, runs) in best.items():
            d = o.result.diagnostics[0]
            err = 1 - o.result.matrix[1][0]
            errors.append(err)
            code = f"{CODE_ERRORS[t]:11.1%}" if pe else f"{'-':>11s}"
            lines.append(f"{t:4d} {err:10.1%} {paper[t]:6.1f}% {code} "
                         f"{1 - d.get('train_accuracy', float('nan')):11.1%} "
                         f"{1 - d.get('validation_accuracy', float('nan')):11.1%} {o.seed:4d}  "
                         + " ".join(f"{1 - r.result.matrix[1][0]:.1%}" for r in runs))
        code_mean = (f"{fmean(CODE_ERRORS[t] for t in best):11.1%}" if pe
                     else f"{'-':>11s}")
        lines.append(f"mean {fmean(errors):10.1%} {fmean(paper[t] for t in best):6.1f}% "
                     f"{code_mean} "
                     f"over {len(errors)} task{'s' * (len(errors) > 1)} "
                     f"({kind.upper()}; code re-run: {CODE_SOURCE})")
        fig, (ax,) = new_figure(width=8.0, height=3.8)
        ax.bar([str(t) for t in best], [100 * e for e in errors])
        ax.set_xlabel("bAbI task")
        ax.set_ylabel("test error, %  (best seed by training error)")
        ax.set_title(f"MemN2N, one task at a time ({kind.upper()}): mean "
                     f"{fmean(errors):.1%}", fontsize=10)
        return "\n".join(lines), [save(fig, out_dir / "babi-single.png")]
