"""`babi-single`: MemN2N trained on each bAbI task alone, against the paper's Table 1 (1k).

Each task is its own one-task stream; every task runs with several seeds and, as in the paper
(Sukhbaatar et al. 2015, §4.2: "repeated each training 10 times ... picked the one with the
lowest training error"), the seed with the lowest training error counts. We run 3 seeds, not
10 (budget), so our errors are if anything a little higher.

Configuration: the paper's best column, "PE LS RN": the model's defaults (3 hops, embedding
20, position encoding, temporal encoding, adjacent tying) with linear start for the first 5
epochs' batches and random noise 0.1 (empty memories inserted in training). `--set
model.position_encoding=false --set model.linear_start=0 --set model.random_noise=0` runs the
bag-of-words column ("BoW"). Training: Adam (lr 0.01), batch
32, gradient norm clipped at 40, 40 epochs; the paper uses SGD for 100 epochs with a halving
learning rate. Linear start and the learning rate were chosen on the validation split (10 %
of each task's training questions), seed 100, tasks 2, 3 and 5 (the hard ones; task 1 is
learned by every setting): linear_start ∈ {0, 5, 20 epochs} × lr ∈ {0.01, 0.005}; 5 epochs at
0.01 had the best mean validation accuracy; random noise 0.1 then raised it on tasks 2, 3, 5,
6, 9 and 10 (the README lists both sweeps).
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

TABLE_1 = ("Sukhbaatar et al. 2015, Table 1, 1k training questions, 3 hops, best of 10 "
           "seeds by training error; as quoted in our issue 19")
EPOCHS = 40
LINEAR_EPOCHS = 5  # linear start: the first epochs' batches without the memory softmax
BATCHES = 29  # batches per epoch: 900 training questions (1000 less the validation split)


@EXPERIMENTS.register("babi-single")
class BabiSingle(Experiment):
    name = "babi-single"
    summary = "MemN2N on each bAbI task alone, best of 3 seeds by training error (Table 1, 1k)"
    strategies = ("naive",)
    options = {"tasks": list(range(1, 21))}
    references = (
        Reference("PE LS RN: mean test error over the 20 tasks (quoted as about 13-14 %)",
                  0.135, TABLE_1, "pe/mean"),
        Reference("PE LS RN: task 5 test error", 0.144, TABLE_1, "pe/5"),
        Reference("BoW: mean test error over the 20 tasks", 0.251, TABLE_1, "bow/mean"),
        Reference("BoW: task 5 test error", 0.183, TABLE_1, "bow/5"),
    )
    protocol_note = ("The paper's per-task errors are not quoted here (we could not check them "
                     "against the paper in this session): only the means and task 5. Ours: "
                     "3 seeds not 10, Adam for 40 epochs not SGD for 100, linear start for a "
                     "fixed 5 epochs (the paper: until the validation loss stops falling).")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "babi", "size": "1k"},
            "model": {"name": "memnet", "linear_start": LINEAR_EPOCHS * BATCHES,
                      "random_noise": 0.1},
            "strategy": {"name": "naive"},
            "train": {"epochs": EPOCHS, "batch_size": 32, "optimizer": "adam", "lr": 0.01,
                      "grad_clip": 40.0, "measure_train": True},
            "options": {"tasks": list(range(1, 21))},
            "seed": [0, 1, 2],
        }

    def quick(self) -> dict[str, Any]:
        return {"options": {"tasks": [1, 5]}, "train": {"epochs": 15}, "seed": [0, 1]}

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
        errors = {t: 1 - o.result.matrix[1][0] for t, (o, _) in best.items()}
        out = {f"{kind}/{t}": e for t, e in errors.items()}
        if len(errors) == 20:
            out[f"{kind}/mean"] = fmean(errors.values())
        return out

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        best = self._best(outcomes)
        lines = [f"{'task':>4s} {'test error':>10s} {'train error':>11s} {'valid error':>11s} "
                 f"{'seed':>4s}  test errors of all seeds"]
        errors = []
        for t, (o, runs) in best.items():
            d = o.result.diagnostics[0]
            err = 1 - o.result.matrix[1][0]
            errors.append(err)
            lines.append(f"{t:4d} {err:10.1%} {1 - d.get('train_accuracy', float('nan')):11.1%} "
                         f"{1 - d.get('validation_accuracy', float('nan')):11.1%} {o.seed:4d}  "
                         + " ".join(f"{1 - r.result.matrix[1][0]:.1%}" for r in runs))
        lines.append(f"mean {fmean(errors):10.1%} over {len(errors)} task"
                     f"{'s' * (len(errors) > 1)} ({self._kind(outcomes).upper()})")
        fig, (ax,) = new_figure(width=8.0, height=3.8)
        ax.bar([str(t) for t in best], [100 * e for e in errors])
        ax.set_xlabel("bAbI task")
        ax.set_ylabel("test error, %  (best seed by training error)")
        ax.set_title(f"MemN2N, one task at a time ({self._kind(outcomes).upper()}): mean "
                     f"{fmean(errors):.1%}", fontsize=10)
        return "\n".join(lines), [save(fig, out_dir / "babi-single.png")]
