"""`three-scenarios`: split MNIST in the task-, domain- and class-incremental scenarios (van de
Ven & Tolias 2019, "Three scenarios for continual learning"; Hsu et al. 2018, "Re-evaluating
continual learning scenarios"), every registered method side by side with the published table.

Owns the protocol's defaults, the three streams (one `split` stream per scenario, through
`stream_variants`), the method list (computed from the registry when the experiment is planned,
so a method registered later joins without an edit here), the table (ACC, mean ± sample std
over seeds, method × scenario), Hsu et al.'s Table 2 as references and the figure (grouped
bars per scenario).

What it shows: the same five tasks of two digits are easy when the task label is given
(task-IL), harder when one head must answer "first or second digit of the pair?" (domain-IL),
and in class-IL the regularizers (EWC, SI, MAS, L2, LwF) fall to about naive's 1/5 while the
replay-based methods (ER, GEM, A-GEM) keep most of joint training's accuracy.

Training: plain SGD (lr 0.1, batch 32, 4 epochs, MLP 2×400). Plain SGD because the penalty
family's default proximal step needs it (Adam would need per-method options, and a method
added later must run at its own defaults); lr 0.1 and batch 32 as the behaviour tests, where
every method's defaults were checked against naive; 2×400 and a few epochs as Hsu et al.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from lifelong.data.task import SCENARIOS
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.metrics import summary
from lifelong.plots import new_figure, palette, save

HSU = ("Hsu et al. 2018, Re-evaluating continual learning scenarios, Table 2 (split MNIST, "
       "5 tasks x 2 digits, 60k training images, MLP 2x400)")
# Hsu et al.'s Table 2, task-IL / domain-IL / class-IL, as fractions; key = our strategy name
# (None: not one of ours; "offline" is their joint training).
PUBLISHED: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "EWC": ("ewc", (0.977, 0.589, 0.198)),
    "SI": ("si", (0.986, 0.648, 0.197)),
    "MAS": ("mas", (0.992, 0.686, 0.195)),
    "LwF": ("lwf", (0.996, 0.710, 0.242)),
    "GEM": ("gem", (0.984, 0.962, 0.922)),
    "DGR": ("dgr", (0.995, 0.957, 0.912)),
    "L2": ("l2", (0.982, 0.660, 0.225)),
    "offline (joint)": ("joint", (0.995, 0.986, 0.975)),
}
REFERENCES = ("naive", "joint")  # always run, first: the lower and the upper bound


class _Registered:
    """`Experiment.strategies` computed on access, from the class or an instance: naive and
    joint, then every registered strategy (so one registered later joins without an edit
    here); `ThreeScenarios.runs_on` keeps each to the scenarios it supports."""

    def __get__(self, obj: object, owner: type | None = None) -> tuple[str, ...]:
        from lifelong.strategies import STRATEGIES, register_all

        register_all()
        rest = [n for n in STRATEGIES.names() if n not in REFERENCES]
        return (*REFERENCES, *rest)


@EXPERIMENTS.register("three-scenarios")
class ThreeScenarios(Experiment):
    name = "three-scenarios"
    summary = ("split MNIST (5 tasks x 2 digits) in the task-, domain- and class-incremental "
               "scenarios: every registered method, ACC mean ± std, beside Hsu et al. 2018")
    options = {"scenarios": list(SCENARIOS)}
    references = tuple(
        Reference(f"{label} ACC, split MNIST, {scenario}-IL", values[i], HSU,
                  f"{ours}/{scenario}/acc" if ours else None)
        for label, (ours, values) in PUBLISHED.items()
        for i, scenario in enumerate(SCENARIOS))
    protocol_note = (
        "Split MNIST as Hsu et al. 2018 (5 tasks of 2 digits, MLP 2x400; task-, domain- and "
        "class-IL as van de Ven & Tolias 2019), but: the source is mnist-10k, the 10k MNIST "
        "test images split 8000/2000 (the shared data holds only those), so each task trains "
        "on about 1600 images instead of about 12000 and is tested on about 400; training is "
        "plain SGD (lr 0.1, batch 32, 4 epochs) for every method, where Hsu et al. used Adam "
        "(lr 0.001) with per-method tuned settings; every method runs at the library's "
        "defaults (not tuned here), e.g. 256 memories per task for ER, GEM and A-GEM, "
        "which differs from their replay budgets; iCaRL runs in class-IL only (a "
        "class-incremental method) and keeps 2000 exemplars in all; DGR trains its VAE one "
        "step per solver step (4 epochs), far less than their generators.")

    strategies = _Registered()  # read by `plan` and `lifelong list`, on the class or not

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"source": "mnist-10k", "num_tasks": 5, "classes_per_task": 2},
            "model": {"name": "mlp", "hidden": [400, 400]},
            "train": {"epochs": 4, "batch_size": 32, "optimizer": "sgd", "lr": 0.1},
            "options": dict(self.options),
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        # The embedded 8x8 digits (about 140 training images per class): seconds per run.
        return {"stream": {"source": "digits"}, "model": {"hidden": [100, 100]}}

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        names = config.get("options", {}).get("scenarios", self.options["scenarios"])
        base = {k: v for k, v in config.get("stream", {}).items()
                if k not in ("name", "scenario")}
        return [{"name": "split", **base, "scenario": s}
                for s in ([names] if isinstance(names, str) else names)]

    def runs_on(self, strategy: str, stream: dict[str, Any]) -> bool:
        # A method defined for some scenarios only (iCaRL: class-IL) fills its cells there.
        from lifelong.strategies import STRATEGIES

        return stream.get("scenario") in STRATEGIES.get(strategy).supports

    def check_options(self, options: dict[str, Any]) -> list[str]:
        names = options.get("scenarios")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or any(s not in SCENARIOS for s in names):
            return [f"options.scenarios={names!r} must list scenarios of "
                    f"{', '.join(SCENARIOS)}"]
        return []

    # ------------------------------------------------------------------------- results
    @staticmethod
    def _grouped(outcomes: Sequence[Outcome]) -> dict[str, dict[str, list[float]]]:
        """strategy label → scenario → ACC of each seed, in run order."""
        out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for o in outcomes:
            out[o.label][o.config["stream"]["scenario"]].append(summary(o.result.matrix)["acc"])
        return out

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        return {f"{method}/{scenario}/acc": fmean(accs)
                for method, by in self._grouped(outcomes).items()
                for scenario, accs in by.items()}

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        grouped = self._grouped(outcomes)
        scenarios = list(dict.fromkeys(o.config["stream"]["scenario"] for o in outcomes))
        seeds = len({o.seed for o in outcomes})
        lines = [f"{'method':10s} " + " ".join(
            f"{s + '-IL ACC' + (' ± std' if seeds > 1 else ''):>17s}" for s in scenarios)]
        means: dict[str, list[float]] = {}
        stds: dict[str, list[float]] = {}
        for method, by in grouped.items():
            means[method] = [fmean(by[s]) if by.get(s) else float("nan") for s in scenarios]
            stds[method] = [stdev(by[s]) if len(by.get(s, ())) > 1 else 0.0  # sample std
                            for s in scenarios]
            cells = " ".join(f"{'—':>17s}" if mu != mu  # not run: the method does not apply
                             else f"{mu:17.3f}" if seeds == 1 else f"{mu:8.3f} ± {sd:6.3f}"
                             for mu, sd in zip(means[method], stds[method], strict=True))
            lines.append(f"{method:10s} {cells}")
        source = outcomes[0].config["stream"]["source"] if outcomes else "?"
        title = f"split {source}, 5 tasks x 2 classes ({seeds} seed{'s' * (seeds > 1)})"
        return "\n".join(lines), [_figure(scenarios, means, stds if seeds > 1 else None,
                                          title, out_dir / "three_scenarios.png")]


def _figure(scenarios: Sequence[str], means: dict[str, list[float]],
            stds: dict[str, list[float]] | None, title: str, path: Path) -> Path:
    """One panel per scenario, a horizontal bar per method (its name on the shared axis, so
    fifteen methods stay apart without fifteen colours), Hsu et al.'s number as a black
    diamond on the method's row, and "n/a" where a method does not apply."""
    published = {ours: values for ours, values in PUBLISHED.values() if ours}
    methods = list(means)
    colours = palette(len(methods))
    fig, axes = new_figure(len(scenarios), width=3.6, height=1.3 + 0.3 * len(methods))
    for k, (ax, scenario) in enumerate(zip(axes, scenarios, strict=True)):
        column = SCENARIOS.index(scenario)
        for y, method in enumerate(methods):
            mu = means[method][k]
            if mu != mu:  # not run: the method does not apply to this scenario
                ax.text(0.02, y, "n/a", va="center", fontsize=7, color="grey")
                continue
            err = [stds[method][k]] if stds else None
            ax.barh(y, mu, xerr=err, color=colours[y], capsize=2, height=0.7)
            ax.text(1.03, y, f"{mu:.2f}", va="center", fontsize=7)  # a column of values
            if method in published:
                ax.plot(published[method][column], y, "D", color="black", markersize=4)
        ax.set_yticks(range(len(methods)), methods if k == 0 else [""] * len(methods))
        ax.set_ylim(len(methods) - 0.5, -0.5)  # the first method on top
        ax.set_xlim(0, 1.15)
        ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_xlabel("ACC (final, all tasks)")
        ax.set_title(f"{scenario}-IL", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    if published.keys() & set(methods):
        title += "\n\u25c6 Hsu et al. 2018, Table 2 (60k training images, tuned per method)"
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
