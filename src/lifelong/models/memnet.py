"""An End-to-End Memory Network over (story, question) token inputs, e.g. the bAbI tasks.

Owns `MemN2N`: the sentence encodings (bag of words or position encoding), temporal encoding,
the K memory hops with masked attention, linear start, and the two weight-tying schemes. Does
not own the vocabulary or the answer classes (the bAbI stream builder, which tells
`build_model` which word each answer is, for the tied answer matrix) nor gradient clipping
(the loop's ``train.grad_clip``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong import checks
from lifelong.errors import ConfigError, DataError, StateError
from lifelong.models import MODELS
from lifelong.models.heads import GrowingHead, MultiHead

Tying = Literal["adjacent", "layerwise"]
Formula = Literal["code", "paper"]


def _token_shape(input_shape: Any) -> tuple[int, int] | None:
    """(M, L) when `input_shape` is ((M, L), (L,)), else None."""
    try:
        (slots, length), (q,) = input_shape
    except (TypeError, ValueError):
        return None
    sizes = (slots, length, q)
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes)
    return (slots, length) if ok and q == length else None


@MODELS.register("memnet")
class MemN2N(nn.Module):
    """End-To-End Memory Network (Sukhbaatar, Szlam, Weston & Fergus 2015, NeurIPS).

    The input is ``x = (story, query)``: `story` integer (B, M, L), M sentences of L word ids
    (int32 from the `babi` stream, or int64), row 0 the most recent, all-zero rows empty;
    `query` integer (B, L). Word 0 is padding, and a sentence's words come first, then its
    padding. Each hop k reads the memory (§2.1):
    m_i = Σ_j l_j ⊙ A^k x_ij + T_A^k(i), c_i likewise with C^k, T_C^k; p = softmax(uᵀ m_i)
    over the non-empty slots (an empty story reads o = 0), or over every slot with the empty
    ones zero memories (`attend_empty`); o = Σ_i p_i c_i; u^{k+1} = u^k + o
    (Eq. 2), or H u^k + o with layer-wise tying. u^1 = Σ_j l_j ⊙ B q_j; the answer logits
    are W u^{K+1}. With adjacent tying the paper ties W^T = C^K (§2.2): an answer's row of W
    is its word's row of C^K, so the answer is scored by the same embedding the last hop
    reads it from in memory. Answers are classes (one class may be several words, as
    ``"n,e"``), so only answers that are one word of the vocabulary are tied; the others
    (and answers no story contains, as ``"yes"``) get learned rows of their own. Embeddings
    start N(0, 0.1) (§4.2), padding stays 0. The paper clips the gradient norm at 40: run
    with ``--set train.grad_clip=40``. Where this departs from the paper is listed in
    `departures`.

    Args:
        vocabulary_size: words, padding and ``<unk>`` included (set from the stream).
        hops: K, the memory layers (paper: 3).
        embedding: d, the embedding width (paper: 20).
        position_encoding: PE weights l_j (§4.1); off, a bag of words (l_j = 1).
        pe_formula: which PE weights. ``"code"`` (default): the authors' released code
            (MemN2N-babi-matlab), l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J), centred
            on 1 and about twice the paper's; ``"paper"``: the formula printed in §4.1,
            l_kj = (1 - j/J) - (k/d)(1 - 2j/J). J is the sentence's number of words in
            both, as §4.1 defines it (the code fixes J at the padded length, which did worse
            on the validation split). The code's weights are what make SGD at the paper's
            rate learn the tasks that chain facts (16: basic induction) on the validation
            split; see the README.
        temporal_encoding: learned T_A, T_C (M × d) added by slot, i.e. by recency (§4.1).
        tying: ``"adjacent"``: A^{k+1} = C^k, B = A^1 (T tied alike); ``"layerwise"``: one A,
            one C, and the linear map H between hops (§2.2).
        linear_start: the first this many training passes (forward calls in training mode
            with gradients on, not under a torch.func transform) run with no softmax in the
            hops: p_i = uᵀ m_i over non-empty slots (§4.2). Counted in the `linear_passes`
            buffer, saved with the weights, so a resumed run switches at the same step.
            0 = off.
        random_noise: random noise (RN, §4.2), the share of empty memories added at random
            to each story in training: every kept statement is followed by an empty slot
            with this probability, so each statement's temporal index (its recency) moves
            back by the empties inserted after it, and the temporal tables cannot memorise
            exact positions. Drawn from the model's own generator (seeded when the model is
            built, saved with its state); only in training passes counted like linear
            start. The paper uses 0.1 in its best configuration; 0 = off.
        attend_empty: the empty slots of the memory are attended too, as zero memories:
            m_i = c_i = 0 (no temporal encoding), so each scores 0 in the softmax and reads
            nothing. This is what the authors' released code (MemN2N-babi-matlab) does: its
            memory has a fixed number of slots, the unused ones hold the nil word, whose
            embeddings are kept at zero, and its softmax runs over every slot. The empty
            slots take attention mass from the statements in proportion to how weakly they
            match the question, so the size of o says how well the best statement matched:
            the yes/no tasks (6, 9, 10) need that. Default off: the softmax runs over the
            statements only (the paper does not say). How many slots there are then matters:
            the stream's ``memory_size`` (the code: the longest training story, at most 50).
        growing: a `GrowingHead` with one head, as in `MLP` (default off).
        answer_words: the word id of each answer class, -1 where an answer is not one word
            of the vocabulary; supplied by `build_model` from a token stream that names its
            answers (bAbI), never set by hand in a config.
        tie_answers: W^T = C^K as above. Default (null): tied when the paper ties it, i.e.
            adjacent tying with one answer head and known `answer_words`; otherwise the
            answer head is a linear layer of its own (a head per task in task-IL, a growing
            head, layer-wise tying). false: always untied (the ablation).
    """

    departures = (
        "empty memory slots are left out of the softmax by default (attend_empty=false); "
        "the authors' code attends them as zero memories (attend_empty=true)",
        "answers that are not one word of the stories' vocabulary (several words, or a "
        "word no story or question contains, e.g. 'yes') get answer rows of their own, "
        "not tied to C^K",
        "linear start ends after a fixed number of training passes (the paper: when the "
        "validation loss stops falling); a pass counts when it runs in training mode with "
        "gradients on, outside torch.func transforms",
        "an untied answer head (a head per task, a growing head, layer-wise tying or "
        "tie_answers=false) starts like nn.Linear, not N(0, 0.1)",
        "position encoding uses the authors' released code's weights by default "
        "(pe_formula='code'), not the formula printed in §4.1 (pe_formula='paper'), with "
        "J the sentence's length as in §4.1 (the code: the padded length)",
        "the output classes are by default the answers seen in training (the babi stream's "
        "outputs='answers'; a several-word answer such as 'n,e' is one class), not the "
        "paper's softmax over every word of the vocabulary (its W; stream.outputs=words)")

    linear_passes: Tensor
    answer_index: Tensor
    pe_k: Tensor
    positions: Tensor

    def __init__(self, input_shape: Any, num_outputs: int, num_heads: int = 1, *,
                 vocabulary_size: int = 0, hops: int = 3, embedding: int = 20,
                 position_encoding: bool = True, pe_formula: Formula = "code",
                 temporal_encoding: bool = True,
                 tying: Tying = "adjacent", linear_start: int = 0,
                 random_noise: float = 0.0, attend_empty: bool = False,
                 growing: bool = False, answer_words: list[int] | None = None,
                 tie_answers: bool | None = None) -> None:
        super().__init__()
        who = "model 'memnet'"
        shape = _token_shape(input_shape)
        problems = [*checks.count(who, "hops", hops, hint="memory layers K; paper: 3"),
                    *checks.count(who, "embedding", embedding, hint="d; paper: 20"),
                    *([] if linear_start == 0 else checks.count(
                        who, "linear_start", linear_start,
                        hint="training passes without softmax; 0 = off"))]
        problems += checks.number(who, "random_noise", random_noise, low=0.0, high=1.0,
                                  high_open=True, hint="share of empty memories; paper: 0.1")
        if pe_formula not in ("code", "paper"):
            problems.append(f"{who}: pe_formula={pe_formula!r} must be 'code' (the authors' "
                            "released code) or 'paper' (the formula printed in §4.1)")
        if tying not in ("adjacent", "layerwise"):
            problems.append(f"{who}: tying={tying!r} must be 'adjacent' (A^(k+1) = C^k) or "
                            "'layerwise' (one A and one C for every hop)")
        if shape is None:
            problems.append(f"{who} reads token inputs (story, question), e.g. the babi "
                            f"stream; stream inputs have shape {input_shape!r}; use an image "
                            "model (mlp, cnn) for image streams")
        elif not isinstance(vocabulary_size, int) or vocabulary_size < 2:
            problems.append(f"{who}: vocabulary_size={vocabulary_size!r} must be >= 2 (word "
                            "0 is padding, 1 is <unk>); build it with build_model from a "
                            "token stream such as babi, which sets it")
        tieable = (answer_words is not None and tying == "adjacent" and num_heads == 1
                   and not growing)
        problems += _answer_problems(who, answer_words, num_outputs, vocabulary_size,
                                     tie_answers, tieable)
        if problems or shape is None:
            raise ConfigError(problems)
        self.story_shape, d = shape, embedding
        self.layerwise, self.linear_start = tying == "layerwise", int(linear_start)
        self.tied = tieable if tie_answers is None else bool(tie_answers)
        # Memory matrices first: adjacent E_0..E_K with A^k = E_{k-1}, C^k = E_k, B = E_0;
        # layer-wise [A, C, B]. Memory matrix i has temporal table i.
        count = 2 if self.layerwise else hops + 1
        self._a = [0] * hops if self.layerwise else list(range(hops))
        self._c = [1] * hops if self.layerwise else list(range(1, hops + 1))
        self._b = 2 if self.layerwise else 0
        embeddings = [nn.Embedding(vocabulary_size, d, padding_idx=0)
                      for _ in range(count + self.layerwise)]
        for e in embeddings:
            nn.init.normal_(e.weight, 0.0, 0.1)
            with torch.no_grad():
                e.weight[0].zero_()  # padding: zero, and padding_idx keeps its gradient 0
        self.embed = nn.ModuleList(embeddings)
        self.temporal = (nn.Parameter(torch.randn(count, shape[0], d) * 0.1)
                         if temporal_encoding else None)
        self.H = nn.Linear(d, d, bias=False) if self.layerwise else None
        if self.H is not None:
            nn.init.normal_(self.H.weight, 0.0, 0.1)
        # PE is separable, l_kj = a_k + b_k f_j: "paper" (1 - k/d) + (2k/d - 1)(j/J), "code"
        # 1 + 4(k - (d+1)/2)/d · (j - (J+1)/2)/J. So Σ_j l_j ⊙ e_j needs only Σ_j e_j and
        # Σ_j f_j e_j, never a (B, M, L, d) weight tensor.
        k = torch.arange(1, d + 1) / d
        self.pe_code = pe_formula == "code"
        pe_k = (torch.stack((torch.ones(d), 4 * k - 2 - 2 / d)) if self.pe_code
                else torch.stack((1 - k, 2 * k - 1)))
        self.register_buffer("pe_k", pe_k, persistent=False)
        self.register_buffer("positions", torch.arange(1, shape[1] + 1.0), persistent=False)
        self.position_encoding, self.d = bool(position_encoding), d
        self.register_buffer("linear_passes", torch.zeros((), dtype=torch.int64))
        self.head: MultiHead | GrowingHead | None = None
        self.answer_own: nn.Parameter | None = None
        if self.tied:  # W = [C^K; own rows][answer_index]: one gather per forward pass
            assert answer_words is not None
            own = [c for c, w in enumerate(answer_words) if w < 0]
            slot = {c: vocabulary_size + k for k, c in enumerate(own)}
            self.answer_own = nn.Parameter(torch.randn(len(own), d) * 0.1)
            self.register_buffer("answer_index", torch.tensor(
                [slot.get(c, w) for c, w in enumerate(answer_words)]), persistent=False)
        else:
            self.head = (GrowingHead(d, num_outputs) if growing and num_heads == 1
                         else MultiHead(d, num_outputs, num_heads))
        self.options = {"vocabulary_size": int(vocabulary_size), "hops": int(hops),
                        "embedding": int(d), "position_encoding": bool(position_encoding),
                        "pe_formula": str(pe_formula),
                        "temporal_encoding": bool(temporal_encoding), "tying": str(tying),
                        "linear_start": self.linear_start,
                        "random_noise": float(random_noise),
                        "attend_empty": bool(attend_empty), "growing": bool(growing),
                        "answer_words": None if answer_words is None else list(answer_words),
                        "tie_answers": self.tied}
        self.random_noise, self.attend_empty = float(random_noise), bool(attend_empty)
        # Its own generator: the noise is part of the model's computation, seeded from the
        # (forked, run-seeded) default generator that initialises the weights.
        self.noise = torch.Generator()
        self.noise.manual_seed(int(torch.randint(2**62, ())))

    @property
    def A(self) -> list[nn.Embedding]:
        """A^1..A^K, the memory input embeddings of each hop."""
        return [self.embed[i] for i in self._a]  # type: ignore[misc]

    @property
    def C(self) -> list[nn.Embedding]:
        """C^1..C^K, the memory output embeddings of each hop."""
        return [self.embed[i] for i in self._c]  # type: ignore[misc]

    @property
    def B(self) -> nn.Embedding:
        """The query embedding."""
        return self.embed[self._b]  # type: ignore[return-value]

    def encode(self, tokens: Tensor, weight: Tensor) -> Tensor:
        """Σ_j l_j ⊙ W x_j for each sentence of `tokens` (..., L) under the embeddings
        `weight` (V, n·d), n matrices side by side (one lookup for all): (..., n·d)."""
        flat = tokens.reshape(-1, tokens.shape[-1])
        words = flat.ne(0)
        length = words.sum(1, keepdim=True).clamp(min=1)  # J
        # f_j: j/J ("paper") or (j - (J+1)/2)/J ("code"); 0 on padding
        frac = words * ((self.positions - (length + 1) / 2) if self.pe_code
                        else self.positions) / length
        if torch._C._are_functorch_transforms_active():
            # Under vmap (GEM's per-task, EWC's per-example gradients) embedding_bag has no
            # batching rule and would run example by example: look the words up instead.
            e = F.embedding(flat, weight, padding_idx=0)  # (N, L, n·d); padding rows are 0
            out = e.sum(1)
            by = (frac.unsqueeze(2) * e).sum(1) if self.position_encoding else None
        else:
            # Bags of words: sums over each sentence's words without a (N, L, n·d) tensor.
            out = F.embedding_bag(flat, weight, mode="sum", padding_idx=0)  # (N, n·d)
            by = (F.embedding_bag(flat, weight, mode="sum", per_sample_weights=frac,
                                  padding_idx=0) if self.position_encoding else None)
        if by is not None:
            out = (out.view(len(flat), -1, self.d) * self.pe_k[0]
                   + by.view(len(flat), -1, self.d) * self.pe_k[1])
        return out.reshape(*tokens.shape[:-1], -1)

    def read(self, x: tuple[Tensor, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """u^{K+1} (B, d) and each hop's attention p^k (B, M) (the paper's Table 1)."""
        story, query = x
        if story.shape[1:] != self.story_shape or query.shape[1:] != self.story_shape[1:]:
            raise DataError(f"model 'memnet' was built for stories {self.story_shape} and "
                            f"queries ({self.story_shape[1]},), got {tuple(story.shape[1:])} "
                            f"and {tuple(query.shape[1:])}; build it for this stream")
        valid = story.ne(0).any(2)  # (B, M): empty slots get no attention
        count = len(self.embed) - self.layerwise  # the memory matrices, looked up at once
        weight = torch.cat([e.weight for e in self.embed[:count]], 1)  # type: ignore[misc]
        mem = self.encode(story, weight).view(*story.shape[:2], count, self.d).transpose(1, 2)
        counted = (self.training and torch.is_grad_enabled()
                   and not torch._C._are_functorch_transforms_active())
        if self.temporal is not None:
            if self.random_noise > 0 and counted:
                # RN: the empties inserted after each statement push it back in time.
                extra = torch.rand(story.shape[:2], generator=self.noise) < self.random_noise
                age = torch.arange(story.shape[1]) + (extra & valid.cpu()).cumsum(1)
                age = age.clamp(max=story.shape[1] - 1).to(story.device)
                time = self.temporal[:, age].permute(1, 0, 2, 3)
            else:
                time = self.temporal.unsqueeze(0)  # (1, n, M, d)
            # An attended empty slot stays the zero memory (the code's all-nil sentence).
            mem = mem + (time * valid[:, None, :, None] if self.attend_empty else time)
        u = self.encode(query, self.B.weight)
        linear = None
        if self.linear_start > 0:  # a tensor, not a Python bool: no device sync, vmap-safe
            linear = self.linear_passes < self.linear_start
            # A strategy's own passes under torch.func (GEM's past-task gradients) do not
            # count: they are not training steps, and a transform may not mutate a buffer.
            if counted:
                self.linear_passes.add_(linear.long())
        attention = []
        low = torch.finfo(u.dtype).min
        for a, c in zip(self._a, self._c, strict=True):
            scores = torch.bmm(mem[:, a], u.unsqueeze(2)).squeeze(2)  # (B, M)
            if self.attend_empty:  # empty slots score 0 and read 0: a "nothing" to attend to
                p = scores.softmax(1)
                if linear is not None:
                    p = torch.where(linear, scores, p)
            else:
                p = scores.masked_fill(~valid, low).softmax(1) * valid  # all empty: p = 0
                if linear is not None:
                    p = torch.where(linear, scores * valid, p)
            o = torch.bmm(p.unsqueeze(1), mem[:, c]).squeeze(1)
            u = o + (self.H(u) if self.H is not None else u)
            attention.append(p)
        return u, attention

    def forward(self, x: tuple[Tensor, Tensor], t: Tensor | int | None = None) -> Tensor:
        u = self.read(x)[0]
        if self.head is not None:
            out: Tensor = self.head(u, t)
            return out
        assert self.answer_own is not None
        w = torch.cat([self.C[-1].weight, self.answer_own]).index_select(0, self.answer_index)
        return u @ w.T

    def get_extra_state(self) -> dict[str, Any]:
        """What a fresh MemN2N needs to take this one's weights (plain values)."""
        return {"model": "memnet", "options": dict(self.options),
                "noise": self.noise.get_state()}

    def set_extra_state(self, state: Any) -> None:
        if state.get("options") != self.options:
            raise StateError(f"saved memnet was built with {state.get('options')}, this one "
                             f"with {self.options}; build the model with the saved options")
        if "noise" in state:
            self.noise.set_state(state["noise"])


def _answer_problems(who: str, answer_words: list[int] | None, num_outputs: int,
                     vocabulary_size: int, tie_answers: bool | None, tieable: bool) -> list[str]:
    # tie_answers's type (bool or null) is the registry's check, as for the other flags.
    if answer_words is not None:
        if len(answer_words) != num_outputs:
            return [f"{who}: answer_words names {len(answer_words)} answers for "
                    f"{num_outputs} outputs; it comes from the stream, build with build_model"]
        bad = [w for w in answer_words if not isinstance(w, int)
               or not -1 <= w < vocabulary_size]
        if bad:
            return [f"{who}: answer_words holds {bad[:3]}, not word ids of a vocabulary of "
                    f"{vocabulary_size} (or -1); it comes from the stream"]
    if tie_answers and not tieable:
        return [f"{who}: tie_answers=true ties the answer matrix to the last hop's memory "
                "embedding (W^T = C^K), which needs adjacent tying, one answer head (not a "
                "head per task, not a growing head) and a stream that names its answers "
                "(babi); set model.tie_answers=false or leave it null"]
    return []
