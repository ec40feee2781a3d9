"""The embedded source `digits`: scikit-learn's bundled 8×8 handwritten digits.

1797 images, no download, used for fast tests and offline demos. Split deterministically into
1437 train / 360 test (a fixed, class-stratified split). Pixel values 0..16 are scaled
to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lifelong.data.sources import SOURCES, SourceData


@SOURCES.register("digits")
def load_digits(data_dir: Path | None = None) -> SourceData:
    """scikit-learn's 8×8 digits (`data_dir` is ignored: the data ship with scikit-learn)."""
    from sklearn.datasets import load_digits as sk_load

    bunch = sk_load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    return SourceData.split("digits", x, y, n_test=360, num_classes=10)
