"""Provenance: what code produced a result.

Owns the versions recorded with every run (Python, torch, numpy, lifelong, and a hash of the
package's source files as they are on disk), the git commit the package runs from, and the hash
of a user's own strategy, model or stream files. The runner compares these before reusing a
stored run, so a result is never reused across code that could change it.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any


def installed_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on, as installed."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "numpy", "lifelong"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["lifelong-code"] = code_hash()
    return out


def code_hash() -> str:
    """A hash of the `lifelong` package's source files as they are on disk: it changes with
    any edit of the code, committed or not, installed from git or from a wheel."""
    root = Path(__file__).resolve().parent.parent  # the `lifelong` package, not `runs/`
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    """The commit the package runs from, with ``+dirty`` when tracked files are modified
    (recorded for provenance); None outside git."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                 cwd=here)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def run_meta(threads: int) -> dict[str, Any]:
    """What every run of this process records: versions (with the torch thread count, which
    changes speed, not results: kept outside the run id and not compared on reuse) and the
    git commit."""
    return {"versions": {**installed_versions(), "torch_threads": str(threads)},
            "git_commit": git_commit()}


def with_user_code(config: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` with `versions["user-code"]` when the run's strategy, model or stream builder
    is a user's (registered from a file outside `lifelong`, e.g. by `--import`): a hash of
    those files as they were when imported. `lifelong-code` covers only our package, so
    without it an edited user method would reuse the runs of its previous version. Only the
    run's own factories count: editing one user file does not retrain everything else."""
    from lifelong.data.builders import STREAMS
    from lifelong.models import MODELS
    from lifelong.strategies import STRATEGIES

    origins = [registry.origin(str(config[section]["name"]))
               for registry, section in ((STREAMS, "stream"), (MODELS, "model"),
                                         (STRATEGIES, "strategy"))]
    if not any(origins):
        return meta
    user = hashlib.sha256("\0".join(o or "" for o in origins).encode()).hexdigest()[:16]
    return {**meta, "versions": {**meta["versions"], "user-code": user}}


# Versions that must match for a stored run to stand in for training it again.
REUSE_KEYS = ("lifelong", "lifelong-code", "user-code", "torch")
