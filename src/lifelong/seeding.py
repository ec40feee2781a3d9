"""Derived, position-independent seeds.

Owns `derive_seed` and `generator`. Library code never draws from the global RNG: every random
choice uses a generator seeded from the run's root seed, a purpose string and (usually) a task
key, so adding a draw in one place never shifts another, and reordering tasks never changes them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of parts (blake2b of their reprs)."""
    h = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded by `derive_seed(*parts)`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def numpy_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by `derive_seed(*parts)`."""
    return np.random.default_rng(derive_seed(*parts))
