"""Models refuse impossible shapes and sizes with one clear error each."""

from __future__ import annotations

import pytest

from lifelong import build_model, build_stream
from lifelong.errors import ConfigError


@pytest.mark.parametrize("name,options,message", [
    ("mlp", {"hidden": [0]}, "hidden=[0] must be a list of positive integers"),
    ("mlp", {"hidden": [16, -5]}, "hidden=[16, -5] must be a list of positive integers"),
    ("mlp", {"dropout": 1.5}, "dropout=1.5 must be in [0, 1)"),
    ("cnn", {"channels": [0]}, "channels=[0] must be a list of positive integers"),
    ("cnn", {"hidden": 0}, "hidden=[0] must be a list of positive integers"),
    ("cnn", {"channels": [4, 4, 4, 4]}, "4 pooling blocks are too many for 8x8 images"),
])
def test_impossible_sizes_are_refused(name: str, options: dict[str, object],
                                      message: str) -> None:
    stream = build_stream("permuted", source="digits", num_tasks=1, seed=0)
    with pytest.raises(ConfigError) as e:
        build_model(name, stream, **options)
    assert message in str(e.value)


def test_cnn_needs_images() -> None:
    with pytest.raises(ConfigError, match="needs images"):
        build_model("cnn", build_stream("planar", seed=0))


def test_logistic_refuses_more_than_two_classes() -> None:
    with pytest.raises(ConfigError, match="needs two classes and one head"):
        build_model("logistic", build_stream("permuted", source="digits", num_tasks=1, seed=0))
