"""Checkpoints and resume: a run killed with SIGKILL mid-stream continues from its last
checkpoint to the matrix of an uninterrupted run, bit for bit on the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lifelong.cli import main
from lifelong.errors import StateError
from lifelong.run.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
from lifelong.store import Store
from lifelong.train import Progress
from tests.conftest import sigkill_at_first_checkpoint

# EWC (anchors, importances) on 4 permuted digit tasks; 20 epochs make a task last about a
# second, so the run can be killed between two checkpoints.
RUN = ["run", "single", "--quick", "--no-progress", "--json", "--set", "strategy.name=ewc",
       "--set", "train.epochs=20", "--set", "stream.num_tasks=4"]
LIFELONG = [sys.executable, "-m", "lifelong.cli"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def kill_after_first_checkpoint(tmp_path: Path, *args: str) -> tuple[str, int]:
    """Start `lifelong run` in a real subprocess, SIGKILL it as soon as a checkpoint exists
    (after task 1 of 4); returns the run id and the tasks its checkpoint holds."""
    store = tmp_path / "killed.sqlite"
    folder = tmp_path / "checkpoints"
    sigkill_at_first_checkpoint([*LIFELONG, *RUN, "--store", str(store), "--out",
                                 str(tmp_path / "out"), *args], folder)
    (ckpt_file,) = folder.glob("*.pt")
    run_id = ckpt_file.stem
    ckpt = load_checkpoint(ckpt_file, run_id)
    assert ckpt is not None
    return run_id, ckpt.tasks_done


def test_a_killed_run_resumes_to_the_uninterrupted_matrix(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id, done = kill_after_first_checkpoint(tmp_path)
    assert 1 <= done < 4, "the run must be killed mid-stream"
    killed = tmp_path / "killed.sqlite"
    with Store(killed) as store:  # reopened: the dead process's run is marked failed
        rec = store.get_run(run_id)
        assert rec.status == "failed" and "interrupted" in (rec.error or "")
        assert rec.rows_recorded >= done + 1  # its finished rows were kept

    code, resumed, _ = cli(capsys, *RUN, "--resume", "--store", str(killed), "--out",
                           str(tmp_path / "out"))
    assert code == 0
    (run,) = resumed["runs"]
    assert run["run_id"] == run_id and run["resumed_tasks"] >= done

    code, whole, _ = cli(capsys, *RUN, "--store", str(tmp_path / "whole.sqlite"), "--out",
                         str(tmp_path / "whole"))
    assert code == 0 and whole["runs"][0]["resumed_tasks"] == 0
    assert run["matrix"] == whole["runs"][0]["matrix"]  # bit-identical, every row
    with Store(killed) as store:
        rec = store.get_run(run_id)
        assert rec.status == "completed" and rec.matrix == run["matrix"]
        assert len(rec.costs) == 4  # the killed tasks' costs came back from the checkpoint
    assert not (tmp_path / "checkpoints" / f"{run_id}.pt").exists()  # removed when done


def test_lifelong_resume_continues_one_run_by_id_and_can_keep_its_checkpoint(capsys, tmp_path  # type: ignore[no-untyped-def]
                                                                          ) -> None:
    run_id, done = kill_after_first_checkpoint(tmp_path)
    store = str(tmp_path / "killed.sqlite")
    code, doc, _ = cli(capsys, "resume", run_id[:6], "--store", store, "--out",
                       str(tmp_path / "out"), "--json", "--keep-checkpoints", "--no-progress")
    assert code == 0 and doc["runs"][0]["resumed_tasks"] >= done
    kept = load_checkpoint(checkpoint_path(tmp_path / "checkpoints", run_id), run_id)
    assert kept is not None and kept.tasks_done == 4  # the last one, kept
    code, whole, _ = cli(capsys, *RUN, "--store", str(tmp_path / "w.sqlite"), "--out",
                         str(tmp_path / "w"))
    assert doc["runs"][0]["matrix"] == whole["runs"][0]["matrix"]
    main(["resume", run_id, "--store", store])  # completed: one clear error
    _, err = capsys.readouterr()
    assert "already completed" in err and "Traceback" not in err


def test_a_corrupt_or_foreign_checkpoint_is_one_clear_error(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    code, doc, _ = cli(capsys, *RUN[:-4], "--store", str(tmp_path / "s.sqlite"), "--out",
                       str(tmp_path / "o"), "--keep-checkpoints")
    run_id = doc["runs"][0]["run_id"]
    path = folder / f"{run_id}.pt"
    assert path.exists()
    path.write_bytes(b"not a checkpoint")
    code, _, err = cli(capsys, *RUN[:-4], "--store", str(tmp_path / "s.sqlite"), "--out",
                       str(tmp_path / "o"), "--resume", "--rerun")
    assert code == 2 and "not a readable lifelong checkpoint" in err and "delete it" in err
    assert "Traceback" not in err
    with pytest.raises(StateError, match="of run 'other'"):
        save_checkpoint(path, Checkpoint("other", Progress((0.1,), (), 0), {}, {}))
        load_checkpoint(path, run_id)


def test_checkpoints_load_without_pickles(tmp_path: Path) -> None:
    # A file that unpickles an arbitrary object is refused by weights_only loading.
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "run_id": "r", "payload": Path("/")}, path)
    with pytest.raises(StateError, match="not a readable lifelong checkpoint"):
        load_checkpoint(path, "r")


class Kept:
    """Checkpoints kept in memory, in the order they were saved."""

    def __init__(self) -> None:
        self.saved: list[bytes] = []

    def save(self, run_id: str, data: bytes) -> None:
        self.saved.append(data)

    def load(self, run_id: str) -> bytes | None:
        return None


def test_a_worker_resumes_from_the_checkpoint_its_job_brings_and_sends_its_own_back(
        tmp_path: Path) -> None:
    # A worker on another node cannot read the driver's disk: the driver sends a resumed run's
    # checkpoint with its job, and the worker sends every checkpoint back through a queue,
    # which the driver writes beside its store.
    import queue

    from lifelong.run.execution import RunJob, run_job
    from lifelong.run.executors import drain, with_checkpoint
    from lifelong.run.groups import run_group_in_worker
    from lifelong.run.planning import plan
    from lifelong.run.provenance import run_meta

    (spec,) = plan("single", quick=True, sets=["strategy.name=ewc", "stream.num_tasks=3"]).runs
    kept = Kept()
    whole = run_job(RunJob(spec, "single", run_meta(1), checkpoints=str(tmp_path / "unused")),
                    checkpoints=kept)
    assert whole.result is not None and len(kept.saved) == 3
    assert not (tmp_path / "unused").exists()  # every checkpoint went to `kept`

    driver = tmp_path / "driver"
    checkpoint_path(driver, spec.run_id).parent.mkdir()
    checkpoint_path(driver, spec.run_id).write_bytes(kept.saved[0])  # stopped after task 1
    job = with_checkpoint(RunJob(spec, "single", run_meta(1), checkpoints=str(driver),
                                 resume=True))
    assert job.resume_from == kept.saved[0]
    checkpoint_path(driver, spec.run_id).unlink()  # the worker must not need the file
    outbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
    (res,) = run_group_in_worker((job,), outbox)
    assert res.status == "completed" and res.resumed_tasks == 1 and res.result is not None
    assert res.result.matrix == whole.result.matrix
    assert not checkpoint_path(driver, spec.run_id).exists()  # the worker wrote no file
    assert outbox.qsize() == 2  # tasks 2 and 3
    drain(outbox, [(job,)])
    last = load_checkpoint(checkpoint_path(driver, spec.run_id), spec.run_id)
    assert last is not None and last.tasks_done == 3
    assert last.progress.ends[-1].accuracies == whole.result.matrix[-1]
