"""The IDX image sources: `fashion-mnist`, `mnist` and `mnist-10k`.

Owns which files each source needs (names, official SHA-256, download mirrors), decoding them
into `SourceData` (float32 images in [0, 1] of shape (N, 1, 28, 28), int64 labels) and the
deterministic 8000/2000 split of `mnist-10k`. Does not own finding or downloading files
(`locate`), the IDX format (`idx`) nor task construction (`lifelong.data.builders`).

- `fashion-mnist`: Xiao, Rasul & Vollgraf (2017), arXiv:1708.07747; 60000 train / 10000 test.
  Also installed by Debian's ``dataset-fashion-mnist`` into ``/usr/share/datasets``.
- `mnist`: LeCun, Cortes & Burges; the official 60000 train / 10000 test.
- `mnist-10k`: only the official MNIST *test* files (10000 images, small enough to ship with CI
  data), split class-stratified into 8000 train / 2000 test. Found under the folder name
  ``mnist-t10k`` (or ``mnist``). Its numbers are not comparable with results on `mnist`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from lifelong.data.sources import SOURCES, SourceData
from lifelong.data.sources.idx import check_labelled, read_idx
from lifelong.data.sources.locate import find_files

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"

FASHION_MNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MNIST_FILES = {  # checked against the official files and Debian's package
    TRAIN_IMAGES: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    TRAIN_LABELS: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    TEST_IMAGES: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    TEST_LABELS: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {  # the published SHA-256 of the official archives (same on both mirrors)
    TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_10K_TEST = 2000  # of the 10000 official test images; the other 8000 train


@SOURCES.register("fashion-mnist")
def load_fashion_mnist(data_dir: Path | None = None) -> SourceData:
    """Fashion-MNIST, 60000 train / 10000 test (see `locate` for where files are looked for)."""
    paths = find_files("fashion-mnist", FASHION_MNIST_FILES, FASHION_MNIST_URLS, data_dir,
                       apt_package="dataset-fashion-mnist")
    return _train_test("fashion-mnist", paths)


@SOURCES.register("mnist")
def load_mnist(data_dir: Path | None = None) -> SourceData:
    """MNIST, the official 60000 train / 10000 test."""
    return _train_test("mnist", find_files("mnist", MNIST_FILES, MNIST_URLS, data_dir))


@SOURCES.register("mnist-10k")
def load_mnist_10k(data_dir: Path | None = None) -> SourceData:
    """The 10000 official MNIST test images, split class-stratified into 8000 / 2000."""
    files = {f: MNIST_FILES[f] for f in (TEST_IMAGES, TEST_LABELS)}
    paths = find_files("mnist-t10k", files, MNIST_URLS, data_dir,
                       aliases=("mnist-10k", "mnist"))
    x, y = read_images_labels(paths[TEST_IMAGES], paths[TEST_LABELS], num_classes=10)
    return SourceData.split("mnist-10k", x, y, n_test=MNIST_10K_TEST, num_classes=10)


def _train_test(name: str, paths: Mapping[str, Path]) -> SourceData:
    train_x, train_y = read_images_labels(paths[TRAIN_IMAGES], paths[TRAIN_LABELS], 10)
    test_x, test_y = read_images_labels(paths[TEST_IMAGES], paths[TEST_LABELS], 10)
    return SourceData(
        name=name,
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        num_classes=10,
    )


def read_images_labels(
    images_path: Path,
    labels_path: Path,
    num_classes: int,
    image_shape: tuple[int, int] = (28, 28),
) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an IDX images/labels pair.

    Returns:
        Images as float32 in [0, 1] of shape (N, 1, H, W) and labels as int64 of shape (N,).

    Raises:
        DataError: either file is damaged, the counts differ, an image is not `image_shape`
            or a label is not below `num_classes`.
    """
    images = read_idx(images_path, "images")
    labels = read_idx(labels_path, "labels")
    check_labelled(images, labels, images_path=images_path, labels_path=labels_path,
                   num_classes=num_classes, image_shape=image_shape)
    # One pass uint8 -> float32 (division, so 255 maps to exactly 1.0).
    x = np.divide(images, np.float32(255.0), dtype=np.float32)
    return x.reshape(len(x), 1, *image_shape), labels.astype(np.int64)
