"""Continual-learning metrics as pure functions of the accuracy matrix R.

Owns ACC, BWT, FWT, forgetting and intransigence. R has shape (T+1, T): row 0 is the untrained
model, row i (1 ≤ i ≤ T) the model after training on task i−1 (tasks numbered 0..T−1),
R[i, j] = test accuracy on task j. Does not own how R is measured (`lifelong.evaluate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _as_matrix(R: Matrix) -> np.ndarray:
    m = np.asarray(R, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] + 1 or m.shape[1] < 1:
        raise ValueError(f"accuracy matrix must have shape (T+1, T), got {m.shape}")
    return m


def acc(R: Matrix) -> float:
    """Average accuracy after the last task (Lopez-Paz & Ranzato 2017, Eq. 2):
    ACC = (1/T) Σ_j R[T, j]."""
    m = _as_matrix(R)
    return float(m[-1].mean())


def bwt(R: Matrix) -> float:
    """Backward transfer (Lopez-Paz & Ranzato 2017, Eq. 3):
    BWT = 1/(T−1) Σ_{j=0}^{T−2} (R[T, j] − R[j+1, j]). Negative = forgetting.
    Undefined (NaN) when T = 1."""
    m = _as_matrix(R)
    T = m.shape[1]
    if T < 2:
        return math.nan
    return float(np.mean([m[T, j] - m[j + 1, j] for j in range(T - 1)]))


def fwt(R: Matrix) -> float:
    """Forward transfer (Lopez-Paz & Ranzato 2017, Eq. 4, with the untrained model's accuracy
    R[0, j] as the reference b̄_j): FWT = 1/(T−1) Σ_{j=1}^{T−1} (R[j, j] − R[0, j]).
    R[j, j] is the accuracy on task j *before* training on it. Undefined (NaN) when T = 1."""
    m = _as_matrix(R)
    T = m.shape[1]
    if T < 2:
        return math.nan
    return float(np.mean([m[j, j] - m[0, j] for j in range(1, T)]))


def forgetting(R: Matrix) -> float:
    """Average forgetting (Chaudhry et al. 2018, "Riemannian Walk", Eq. 5): for each task
    j < T−1, the best accuracy reached on it at any earlier point after learning it minus its
    final accuracy, f_j = max_{j+1 ≤ l ≤ T−1} R[l, j] − R[T, j]; averaged over j. (Avalanche
    uses first-minus-last instead.) Undefined (NaN) when T = 1."""
    m = _as_matrix(R)
    T = m.shape[1]
    if T < 2:
        return math.nan
    return float(np.mean([m[j + 1:T, j].max() - m[T, j] for j in range(T - 1)]))


def intransigence(R: Matrix, R_joint: Matrix) -> list[float]:
    """Intransigence per task (Chaudhry et al. 2018, Eq. 6): I_k = a*_k − R[k+1, k], where
    a*_k = R_joint[k+1, k] is what joint training on tasks 0..k reaches on task k. Higher =
    less able to learn new tasks."""
    m, j = _as_matrix(R), _as_matrix(R_joint)
    if m.shape != j.shape:
        raise ValueError(f"matrices differ in shape: {m.shape} vs {j.shape}")
    return [float(j[k + 1, k] - m[k + 1, k]) for k in range(m.shape[1])]


def learning_accuracy(R: Matrix) -> float:
    """Learning accuracy (Riemer et al. 2019, "Learning to Learn without Forgetting by
    Maximizing Transfer and Minimizing Interference", LA): the mean accuracy on each task right
    after learning it, LA = (1/T) Σ_{k=0}^{T−1} R[k+1, k]. Plasticity: a penalty that holds
    the weights too firmly learns new tasks worse, and LA falls."""
    m = _as_matrix(R)
    return float(np.mean([m[k + 1, k] for k in range(m.shape[1])]))


def summary(R: Matrix) -> dict[str, float]:
    """ACC, BWT, FWT and forgetting of one matrix."""
    return {"acc": acc(R), "bwt": bwt(R), "fwt": fwt(R), "forgetting": forgetting(R)}
