"""MemN2N: masking of empty memories, position encoding by hand, weight tying, linear start,
state round trips, and that it learns a small task that needs its memory."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from lifelong.errors import ConfigError, DataError, StateError
from lifelong.models import MODELS
from lifelong.models.heads import GrowingHead
from lifelong.models.memnet import Formula, MemN2N

M, L = 5, 3


def build(seed: int = 0, slots: int = M, vocabulary: int = 20, **options: Any) -> MemN2N:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MemN2N(((slots, L), (L,)), 4, vocabulary_size=vocabulary, **options)


def tokens(batch: int, filled: int, seed: int = 0, slots: int = M) -> tuple[Tensor, Tensor]:
    """Stories whose `filled` most recent rows hold 2-word sentences, the rest empty."""
    g = torch.Generator().manual_seed(seed)
    story = torch.zeros(batch, slots, L, dtype=torch.int64)
    story[:, :filled, :2] = torch.randint(2, 20, (batch, filled, 2), generator=g)
    query = torch.zeros(batch, L, dtype=torch.int64)
    query[:, :2] = torch.randint(2, 20, (batch, 2), generator=g)
    return story, query


def test_shapes_heads_and_registry() -> None:
    assert MODELS.check("memnet", {"hops": 2, "tying": "layerwise"}, "model") == []
    x = tokens(6, 3)
    model = build(hops=2)
    u, attention = model.read(x)
    assert model(x).shape == (6, 4) and u.shape == (6, 20)
    assert len(attention) == 2 and all(p.shape == (6, M) for p in attention)
    multi = MemN2N(((M, L), (L,)), 4, 3, vocabulary_size=20)
    assert multi(x, torch.tensor([0, 1, 2, 0, 1, 2])).shape == (6, 4)


def test_empty_slots_get_no_attention() -> None:
    model = build().eval()
    x = tokens(4, 3)
    out = model(x)
    for p in model.read(x)[1]:
        assert torch.all(p[:, 3:] == 0)
        assert torch.allclose(p.sum(1), torch.ones(4))
    with torch.no_grad():  # the temporal encoding of an empty slot is never read
        assert model.temporal is not None
        model.temporal[:, 3:] += 5.0
    assert torch.equal(model(x), out)
    story = x[0].clone()
    story[:, 3, :2] = torch.tensor([4, 5])  # content in slot 3 is read
    assert not torch.allclose(model((story, x[1])), out)
    # More (empty) slots than needed change nothing (no temporal table to differ by).
    small, big = build(temporal_encoding=False), build(slots=8, temporal_encoding=False)
    big.load_state_dict(small.state_dict())
    wide = (torch.cat([x[0], torch.zeros(4, 3, L, dtype=torch.int64)], 1), x[1])
    assert torch.allclose(big.eval()(wide), small.eval()(x), atol=1e-6)
    # An entirely empty story reads o = 0 at every hop: u^{K+1} = u^1.
    empty = (torch.zeros_like(x[0]), x[1])
    u, attention = model.read(empty)
    assert all(torch.all(p == 0) for p in attention)
    assert torch.equal(u, model.encode(x[1], model.B.weight))


def test_attended_empty_slots_are_zero_memories_in_the_softmax() -> None:
    # attend_empty: an empty slot is the zero memory (no temporal encoding), scored 0 and
    # read as 0, as the authors' code's all-nil sentences: it takes attention mass away from
    # the statements, so how well they match the question shows in o's size.
    masked, attended = build(), build(attend_empty=True)  # the same weights (same seed)
    assert torch.equal(masked.embed[0].weight, attended.embed[0].weight)
    x = tokens(4, 3)
    u1 = masked.encode(x[1], masked.B.weight)
    (_, pm), (_, pa) = masked.eval().read(x), attended.eval().read(x)
    mem = masked.encode(x[0], masked.A[0].weight) + masked.temporal[0]  # type: ignore[index]
    scores = torch.einsum("bmd,bd->bm", mem, u1)
    scores[:, 3:] = 0.0  # empty slots: zero memory, score 0
    assert torch.allclose(pa[0], scores.softmax(1), atol=1e-6)
    assert torch.all(pa[0][:, 3:] > 0) and torch.allclose(pa[0].sum(1), torch.ones(4))
    assert torch.allclose(pm[0][:, :3], scores[:, :3].softmax(1), atol=1e-6)
    with torch.no_grad():  # the temporal encoding of an empty slot is still never read
        assert attended.temporal is not None
        out = attended(x)
        attended.temporal[:, 3:] += 5.0
        assert torch.equal(attended(x), out)
    # An entirely empty story reads o = 0 at every hop, as when masked.
    empty = (torch.zeros_like(x[0]), x[1])
    assert torch.allclose(attended.read(empty)[0], u1)
    # Linear start and random noise run with it; its state round-trips.
    noisy = build(attend_empty=True, linear_start=2, random_noise=0.5).train()
    assert math.isfinite(noisy(x).sum().item())
    fresh = build(seed=3, attend_empty=True, linear_start=2, random_noise=0.5)
    fresh.load_state_dict(roundtrip(noisy))
    with pytest.raises(StateError, match="build the model with the saved options"):
        build(linear_start=2, random_noise=0.5).load_state_dict(roundtrip(noisy))


def one_hot_words(d: int, formula: Formula = "paper") -> MemN2N:
    """Word 2 embeds to all ones, word 3 to zeros, so a sentence's encoding is the PE weight
    of the position word 2 is at."""
    model = MemN2N(((M, 4), (4,)), 2, vocabulary_size=4, embedding=d, pe_formula=formula)
    with torch.no_grad():
        model.B.weight.zero_()
        model.B.weight[2] = 1.0
    return model


def test_position_encoding_matches_hand_computation() -> None:
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J) with d = 4.
    model = one_hot_words(4)
    sentences = torch.tensor([[2, 3, 0, 0],      # J=2, j=1: 1/2 - (k/4)·0 = 1/2
                              [3, 2, 0, 0],      # J=2, j=2: 0 + k/4
                              [3, 2, 3, 0],      # J=3, j=2: 1/3 + k/12
                              [2, 0, 0, 0]])     # J=1, j=1: k/4
    got = model.encode(sentences, model.B.weight)
    k = torch.arange(1, 5.0)
    want = torch.stack([torch.full((4,), 0.5), k / 4, 1 / 3 + k / 12, k / 4])
    assert torch.allclose(got, want, atol=1e-6)


def test_the_authors_code_position_encoding_matches_hand_computation() -> None:
    # l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J) with d = 4: 1 + (2k - 5)(2j - J - 1) / (4J).
    model = one_hot_words(4, "code")
    sentences = torch.tensor([[2, 3, 0, 0],      # J=2, j=1: 1 - (2k - 5)/8
                              [3, 2, 0, 0],      # J=2, j=2: 1 + (2k - 5)/8
                              [3, 2, 3, 0],      # J=3, j=2: 1 (the middle word)
                              [2, 0, 0, 0]])     # J=1, j=1: 1
    got = model.encode(sentences, model.B.weight)
    k = torch.arange(1, 5.0)
    want = torch.stack([1 - (2 * k - 5) / 8, 1 + (2 * k - 5) / 8, torch.ones(4), torch.ones(4)])
    assert torch.allclose(got, want, atol=1e-6)
    assert MemN2N(((M, 4), (4,)), 2, vocabulary_size=4).options["pe_formula"] == "code"
    with pytest.raises(ConfigError, match="pe_formula='printed' must be 'code'"):
        MemN2N(((M, 4), (4,)), 2, vocabulary_size=4, pe_formula="printed")  # type: ignore[arg-type]


def test_bag_of_words_ignores_order_position_encoding_does_not() -> None:
    a = torch.tensor([[5, 6, 7], [8, 9, 0]])
    b = torch.tensor([[7, 5, 6], [9, 8, 0]])
    bow, pe = build(position_encoding=False), build()
    assert torch.allclose(bow.encode(a, bow.B.weight), bow.encode(b, bow.B.weight))
    assert not torch.allclose(pe.encode(a, pe.B.weight), pe.encode(b, pe.B.weight))


def test_tying_and_padding() -> None:
    adjacent = build(hops=3)
    assert adjacent.B is adjacent.A[0]
    for k in range(2):
        assert adjacent.A[k + 1] is adjacent.C[k]
    assert len({id(e) for e in adjacent.embed}) == 4  # K + 1 matrices in all
    layerwise = build(hops=3, tying="layerwise")
    assert all(a is layerwise.A[0] for a in layerwise.A)
    assert all(c is layerwise.C[0] for c in layerwise.C)
    assert len({id(layerwise.A[0]), id(layerwise.C[0]), id(layerwise.B)}) == 3
    assert layerwise.H is not None and adjacent.H is None
    for model in (adjacent, layerwise):
        assert all(torch.all(e.weight[0] == 0) for e in model.embed)
        model(tokens(4, 3)).square().sum().backward()
        for e in model.embed:  # padding keeps embedding zero: no gradient reaches it
            assert e.weight.grad is not None and torch.all(e.weight.grad[0] == 0)
            assert e.weight.grad.abs().sum() > 0


def test_linear_start_counts_training_passes_then_inserts_softmax() -> None:
    model = build(linear_start=2)
    x = tokens(3, 3)
    model.eval()
    model(x)
    model.train()
    with torch.no_grad():
        model(x)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, Tensor], story: Tensor, query: Tensor) -> Tensor:
        out: Tensor = torch.func.functional_call(model, p, ((story[None], query[None]),))
        return out.sum()

    torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, *x)
    assert model.linear_passes.item() == 0  # neither eval, no-grad nor torch.func passes
    linear = [model.read(x)[1][0] for _ in range(2)]
    assert model.linear_passes.item() == 2
    soft = model.read(x)[1][0]
    assert model.linear_passes.item() == 2  # stops counting once the softmax is in
    assert torch.allclose(soft.sum(1), torch.ones(3))
    assert torch.all(soft[:, 3:] == 0) and torch.all(linear[0][:, 3:] == 0)
    # Same weights, so the same scores s: linear p = s, softmax p = exp(s) / Z, and
    # s - log p is one constant per story over its non-empty slots.
    assert torch.equal(linear[0], linear[1])
    gap = linear[0][:, :3] - soft[:, :3].log()
    assert torch.allclose(gap, gap[:, :1].expand(-1, 3), atol=1e-5)
    assert not torch.allclose(linear[0].sum(1), torch.ones(3))


def roundtrip(model: MemN2N) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state: dict[str, Any] = torch.load(buffer, weights_only=True)
    return state


@pytest.mark.parametrize("options", [{"linear_start": 5},
                                     {"tying": "layerwise", "growing": True}])
def test_state_round_trip_into_a_fresh_model(options: dict[str, Any]) -> None:
    model = build(seed=1, **options)
    if options.get("growing"):
        assert isinstance(model.head, GrowingHead)
        model.head.grow([0, 2], generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = tokens(8, 3), torch.arange(8) % 2 * 2
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    fresh = build(seed=2, **options)
    fresh.load_state_dict(roundtrip(model))
    assert torch.equal(fresh.linear_passes, model.linear_passes)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert torch.equal(fresh.train()(x), model.train()(x))  # the next pass: same mode
    assert fresh.linear_passes.item() == min(4, options.get("linear_start", 0))
    with pytest.raises(StateError, match="build the model with the saved options"):
        build(**{**options, "hops": 2}).load_state_dict(roundtrip(model), strict=False)


def synthetic(n: int, g: torch.Generator) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """Stories of 2..5 statements "entity location" (row 0 the latest) and the question
    "where entity?" about one of them; the answer is that entity's latest location."""
    entities, locations = 5, 5
    ent = torch.randint(entities, (n, M), generator=g)
    loc = torch.randint(locations, (n, M), generator=g)
    filled = torch.randint(2, M + 1, (n,), generator=g)
    valid = torch.arange(M) < filled[:, None]
    story = torch.zeros(n, M, L, dtype=torch.int64)
    story[:, :, 0] = torch.where(valid, 3 + ent, 0)
    story[:, :, 1] = torch.where(valid, 3 + entities + loc, 0)
    asked = ent[torch.arange(n), (torch.rand(n, generator=g) * filled).long()]
    query = torch.zeros(n, L, dtype=torch.int64)
    query[:, 0], query[:, 1] = 2, 3 + asked  # word 2 = "where"
    latest = ((ent == asked[:, None]) & valid).int().argmax(1)
    return (story, query), loc[torch.arange(n), latest]


def test_learns_a_task_that_needs_memory_and_recency() -> None:
    g = torch.Generator().manual_seed(0)
    (story, query), y = synthetic(4000, g)
    test_x, test_y = synthetic(1000, g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MemN2N(((M, L), (L,)), 5, vocabulary_size=13)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        i = torch.randint(4000, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model((story[i], query[i])), y[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model.eval()(test_x).argmax(1) == test_y).float().mean().item()
    # The answer is uniform over 5 locations: without memory, 20%.
    assert accuracy >= 0.9


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"reads token inputs \(story, question\).*"
                       r"shape \(1, 28, 28\); use an image model \(mlp, cnn\)"):
        MemN2N((1, 28, 28), 10, vocabulary_size=50)
    with pytest.raises(ConfigError, match="vocabulary_size=0 must be >= 2"):
        MemN2N(((M, L), (L,)), 10)
    with pytest.raises(ConfigError) as e:
        MemN2N(((M, L), (L,)), 10, vocabulary_size=9, hops=0, tying="rnn",  # type: ignore[arg-type]
               linear_start=-1)
    assert len(e.value.problems) == 3
    assert "hops=0" in str(e.value) and "tying='rnn'" in str(e.value)
    assert "linear_start=-1" in str(e.value)
    with pytest.raises(DataError, match="built for stories"):
        build()(tokens(2, 2, slots=M + 1))
    assert math.isfinite(build()(tokens(2, 2)).sum().item())


def test_tied_answers_score_each_answer_by_its_words_last_hop_embedding() -> None:
    # Answers 0 and 2 are words 5 and 7 of the vocabulary; 1 and 3 are not words (-1).
    tied = build(answer_words=[5, -1, 7, -1])
    assert tied.tied and tied.head is None and tied.answer_own is not None
    x = tokens(6, 3)
    u = tied.read(x)[0]
    c_k = tied.C[-1].weight
    w = torch.stack([c_k[5], tied.answer_own[0], c_k[7], tied.answer_own[1]])
    assert torch.allclose(tied(x), u @ w.T, atol=1e-6)
    # The answer loss trains the words' rows of C^K (and only the tied rows beyond memory).
    torch.nn.functional.cross_entropy(tied(x), torch.tensor([0, 2, 0, 2, 0, 2])).backward()
    assert c_k.grad is not None and c_k.grad[5].abs().sum() > 0
    assert tied.answer_own.grad is not None
    # Untied where asked, or where the paper does not tie (layer-wise, a head per task).
    assert not build(answer_words=[5, -1, 7, -1], tie_answers=False).tied
    assert not build(answer_words=[5, -1, 7, -1], tying="layerwise").tied
    assert not build().tied  # no answer words known: its own head
    with pytest.raises(ConfigError, match="tie_answers=true .* one answer head"):
        MemN2N(((M, L), (L,)), 4, 2, vocabulary_size=20, answer_words=[5, -1, 7, -1],
               tie_answers=True)
    with pytest.raises(ConfigError, match="answer_words names 3 answers for 4 outputs"):
        build(answer_words=[5, -1, 7])
    with pytest.raises(ConfigError, match="not word ids of a vocabulary of 20"):
        build(answer_words=[5, -1, 70, -1])
    # The tie survives a state round trip into a fresh model.
    other = build(seed=1, answer_words=[5, -1, 7, -1])
    other.load_state_dict(tied.state_dict())
    assert torch.equal(other(x), tied(x))
