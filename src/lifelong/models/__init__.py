"""Models: the `MODELS` registry and `build_model`.

Every model takes `(input_shape, num_outputs, num_heads)` from the stream and keyword options
from the config (a token model, one with a `vocabulary_size` parameter, also gets the size of
the stream's vocabulary and, with an `answer_words` parameter, the word id of each answer
class the stream names), and is called as `model(x, t)` where `t` (task labels) picks the
head. Every public module registers its models and is found by `Registry.discover` (no list
to edit); installed packages add models through the `lifelong.models` entry points.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lifelong.data.task import Stream
from lifelong.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", skip=("input_shape", "num_outputs", "num_heads", "vocabulary_size",
                   "answer_words"),
    package=__name__,
    group="lifelong.models")


def build_model(name: str, stream: Stream, *, seed: int = 0, **options: Any) -> nn.Module:
    """Build model `name` shaped for `stream`, initialised from `seed` (not the global RNG)."""
    from lifelong.errors import ConfigError
    from lifelong.seeding import derive_seed

    problems = MODELS.check(name, options, "model")
    if problems:
        raise ConfigError(problems)
    # Token streams (bAbI) give token models the vocabulary's size; image models refuse them.
    supplied: dict[str, Any] = {}
    parameters = inspect.signature(MODELS.get(name)).parameters
    if "vocabulary_size" in parameters:
        supplied["vocabulary_size"] = len(stream.vocabulary)
        if "answer_words" in parameters and stream.answers:
            # Which word each answer class is (-1: several words, or none of the stories').
            ids = {w: i for i, w in enumerate(stream.vocabulary)}
            supplied["answer_words"] = [ids.get(a, -1) for a in stream.answers]
    elif stream.vocabulary:
        raise ConfigError(f"model '{name}' reads images, but stream '{stream.name}' has token "
                          "inputs (a story and a question per example); use "
                          "--set model.name=memnet")
    # Parameter initialisation draws from torch's default generator; fork it so the global
    # RNG state the caller sees is untouched, and seed it from the run seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model-init", name))
        model: nn.Module = MODELS.build(
            name, stream.input_shape, stream.num_outputs, stream.num_heads, supplied=supplied,
            **options)
    return model
