"""CNN encoder + LSTM decoder captioners: Show and Tell (no attention) and Show, Attend and Tell (soft or hard).

Encoder: a small CNN (3x3 conv + ReLU per stage, a 2x2 max-pool after each of the first `pools` stages, all by
default) whose last feature map, with two coordinate channels appended (x and y in [-1, 1]), gives
L = grid x grid annotation vectors a_i (grid = image_size / 2^pools; pools = stages - 1 doubles the grid).

Decoder (one LSTM cell), at step t with the previous word y_{t-1} and state h_{t-1}:
  none (Show and Tell, Vinyals et al. 2015): the image vector (a linear map of the flattened feature
        map, like a CNN's fully connected layer) is the initial state; the input is E y_{t-1}.
  soft (Xu et al. 2015): alpha_t = softmax(score(h_{t-1}, a_i)), z_t = beta_t * sum_i alpha_ti a_i with
        the gating scalar beta_t = sigmoid(f_beta(h_{t-1})); the input is [E y_{t-1}; z_t].
  hard: the location s_t ~ Categorical(alpha_t) in training (its argmax in eval), z_t = beta_t * a_{s_t}; with
        semi_sampling = p < 1, a caption samples its locations with probability p and otherwise uses the
        expected context sum_i alpha_ti a_i (trained by backpropagation) for all its steps (Xu et al. 2015 §4.1:
        "with probability 0.5 for a given image, we set the sampled attention location to its expected value").
The initial state of the attention models is a linear map of the mean annotation vector (as in the
paper), or zeros with init_state="zeros" (the image then reaches the decoder only through attention). Output (deep output layer): p(y_t) = softmax(W_o tanh(W [h_t; z_t; E y_{t-1}])).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import attention as attn_registry
from ..attention import Needs
from . import beam
from .seq2seq import stops_early

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def decoder_kind(attention: str) -> str:
    """The decoder a mechanism makes, by its capabilities: "none" (no attention: Show and Tell), "hard" (a sampled
    location trained by REINFORCE) or "soft"."""
    cls = attn_registry.get_class(attention)
    return "none" if not cls.attends else "hard" if cls.reinforce else "soft"


class Encoder(nn.Module):
    def __init__(self, channels: list[int], image_size: int, pools: int | None = None) -> None:
        super().__init__()
        pools = len(channels) if pools is None else int(pools)
        if not 0 <= pools <= len(channels):
            raise ValueError(f"pools must be between 0 and the number of stages ({len(channels)}), got {pools}")
        layers: list[nn.Module] = []
        c_in = 3
        for k, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            if k < pools:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.net = nn.Sequential(*layers)
        self.grid = image_size // 2 ** pools
        if self.grid < 1:
            raise ValueError(f"image size {image_size} is too small for {pools} pooling stages")
        self.dim = c_in + 2
        g = torch.linspace(-1.0, 1.0, self.grid)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy]).reshape(2, -1).t().contiguous(), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] -> annotation vectors [B, L, D] (row-major over the grid)."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        f = self.net(x)                                     # [B, C, g, g]
        f = f.flatten(2).transpose(1, 2)                    # [B, L, C]
        return torch.cat([f, self.coords.expand(f.shape[0], -1, -1)], dim=-1)


class Captioner(nn.Module):
    # weights over the grid cells (an alignment); the query (the LSTM state) and the keys (the annotation vectors)
    # differ in size; none: Show and Tell
    attention_needs = Needs(alignment=True, equal_dims=False, optional=True)

    def __init__(self, vocab_size: int, *, attention: str = "none", attention_options: dict | None = None,
                 channels: list[int] = (16, 32, 48), image_size: int = 64, pools: int | None = None, emb_dim: int = 48,
                 hidden: int = 128, dropout: float = 0.1, semi_sampling: float = 1.0, init_state: str = "mean") -> None:
        super().__init__()
        if init_state not in ("mean", "zeros"):
            raise ValueError(f"init_state must be 'mean' or 'zeros', got {init_state!r}")
        self.kind = decoder_kind(attention)
        if init_state == "zeros" and self.kind == "none":
            raise ValueError("init_state 'zeros' needs attention: without it the decoder would never see the image")
        self.init_state = init_state
        if not 0.0 <= semi_sampling <= 1.0:
            raise ValueError(f"semi_sampling must be a probability in [0, 1], got {semi_sampling}")
        self.semi_sampling = float(semi_sampling)
        self.encoder = Encoder(list(channels), image_size, pools)
        D, L = self.encoder.dim, self.encoder.grid ** 2
        self.hidden = hidden
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        if self.kind == "none":
            self.attn = None
            self.init = nn.Linear(D * L, 2 * hidden)
            self.cell = nn.LSTMCell(emb_dim, hidden)
            z_dim = 0
        else:
            self.attn = attn_registry.build(attention, hidden, D, D, **(attention_options or {}))
            self.init = nn.Linear(D, 2 * hidden)
            self.beta = nn.Linear(hidden, 1)
            z_dim = self.attn.output_dim    # D, unless the mechanism projects the values
            self.cell = nn.LSTMCell(emb_dim + z_dim, hidden)
        self.deep = nn.Linear(hidden + z_dim + emb_dim, emb_dim)
        self.out = nn.Linear(emb_dim, vocab_size)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("baseline", torch.zeros(()))          # REINFORCE moving-average baseline (hard)
        self.register_buffer("baseline_set", torch.zeros((), dtype=torch.bool))

    @property
    def grid(self) -> int:
        return self.encoder.grid

    # ---- pieces -----------------------------------------------------------------------
    def encode(self, images: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """(annotation vectors [B, L, D], or them and their key projections when the mechanism caches them; initial
        state)."""
        feats = self.encoder(images)
        v = feats.flatten(1) if self.kind == "none" else feats.mean(1)
        h, c = torch.tanh(self.init(self.drop(v))).chunk(2, dim=-1)
        if self.init_state == "zeros":
            h, c = torch.zeros_like(h), torch.zeros_like(c)
        if self.attn is not None and self.attn.caches_keys:
            # the key projection (W_k a_i, additive) does not change over the steps: once per image, not once per
            # step and caption
            feats = torch.cat([feats, self.attn.project_keys(feats)], dim=-1)
        return feats, (h.contiguous(), c.contiguous())

    def _scores(self, h: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        """(values, scores [B, L]) of the query h: from the cached key projections, or the mechanism's own score."""
        if not self.attn.caches_keys:
            return feats, self.attn.score(h.unsqueeze(1), feats).squeeze(1)
        D = self.encoder.dim
        values, keys = feats[..., :D], feats[..., D:]
        return values, self.attn.projected_scores(h, keys)

    def step(self, token: Tensor, state: tuple[Tensor, Tensor], feats: Tensor, sampled: Tensor | None = None):
        """One decoding step -> (logits [B, V], state, alpha [B, L] | None, log p(location) [B] | None, entropy | None).
        Hard attention with `sampled` (bool [B]): the rows where it is False take the expected context instead of
        the sampled location, and their log p(location) is 0 (no REINFORCE term)."""
        h, c = state
        e = self.embed(token)
        alpha = logp = ent = None
        if self.kind == "none":
            x = e
        else:
            if self.attn.caches_keys or self.kind == "hard":
                values, scores = self._scores(h, feats)
                if self.kind == "hard":
                    ctx, alpha, logp, ent = self.attn.choose(scores, values)
                    if sampled is not None:
                        expected = torch.bmm(alpha.unsqueeze(1), values).squeeze(1)
                        ctx = torch.where(sampled.unsqueeze(-1), ctx, expected)
                        logp = logp * sampled.to(logp.dtype)
                else:
                    alpha = torch.softmax(scores, dim=-1)
                    ctx = torch.bmm(alpha.unsqueeze(1), values).squeeze(1)
            else:
                ctx, alpha = self.attn(h, feats, feats)
            z = torch.sigmoid(self.beta(h)) * ctx
            x = torch.cat([e, z], dim=-1)
        h, c = self.cell(x, (h, c))
        parts = [h, e] if self.kind == "none" else [h, z, e]
        logits = self.out(self.drop(torch.tanh(self.deep(self.drop(torch.cat(parts, dim=-1))))))
        return logits, (h, c), alpha, logp, ent

    # ---- teacher forcing ----------------------------------------------------------------
    def forward(self, images: Tensor, inputs: Tensor, image_index: Tensor, lengths: Tensor | None = None):
        """images [B, H, W, 3], inputs [N, T] (BOS + caption), image_index [N] (row -> image), lengths [N] (steps
        of each row, non-increasing: at step t only the rows still running are computed).
        Returns logits [N, T, V], alphas [N, T, L] | None, log p(locations) [N, T] | None, entropies | None
        (zeros past a row's length)."""
        feats, (h, c) = self.encode(images)
        feats, h, c = feats[image_index], h[image_index], c[image_index]
        N, T = inputs.shape
        active = [N] * T if lengths is None else [int((lengths > t).sum()) for t in range(T)]
        sampled = None
        if self.kind == "hard" and self.training and self.semi_sampling < 1.0:
            sampled = torch.rand(N, device=inputs.device) < self.semi_sampling     # one draw per caption
        logits, alphas, logps, ents = [], [], [], []

        def pad(x: Tensor | None, n: int) -> Tensor | None:
            return None if x is None or n == N else torch.cat([x, x.new_zeros((N - n, *x.shape[1:]))])

        for t in range(T):
            n = active[t]
            lg, (h_n, c_n), a, lp, en = self.step(inputs[:n, t], (h[:n], c[:n]), feats[:n],
                                                  None if sampled is None else sampled[:n])
            h, c = h_n, c_n
            logits.append(lg if n == N else pad(lg, n))
            alphas.append(a if n == N else pad(a, n))
            logps.append(lp if n == N else pad(lp, n))
            ents.append(en if n == N else pad(en, n))
        stack = (lambda xs: None if xs[0] is None else torch.stack(xs, 1))
        return torch.stack(logits, 1), stack(alphas), stack(logps), stack(ents)

    # ---- decoding -----------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, images: Tensor, max_len: int) -> tuple[list[list[int]], list[Tensor | None]]:
        """Most probable word at every step: token ids (EOS excluded) and alphas [T, L] per image."""
        feats, state = self.encode(images)
        B = images.shape[0]
        token = torch.full((B,), BOS, dtype=torch.long, device=images.device)
        done = torch.zeros(B, dtype=torch.bool, device=images.device)
        stop_early = stops_early(images.device)
        tokens, step_alphas = [], []
        for _ in range(max_len):
            logits, state, alpha, _, _ = self.step(token, state, feats)
            token = logits.log_softmax(-1).argmax(-1)
            tokens.append(token)
            step_alphas.append(alpha)
            done |= token == EOS
            if stop_early and bool(done.all()):
                break
        # one read of the device for the whole batch: each caption ends before its first EOS, its
        # alphas run to the step that emitted the EOS (to max_len when there is none)
        ids = torch.stack(tokens, 1).cpu()
        ends = torch.where((ids == EOS).any(1), (ids == EOS).int().argmax(1), ids.size(1)).tolist()
        out = [ids[b, :ends[b]].tolist() for b in range(B)]
        if step_alphas[0] is None:
            return out, [None] * B
        alphas = torch.stack(step_alphas, 1)
        return out, [alphas[b, :min(ends[b] + 1, ids.size(1))] for b in range(B)]

    @torch.no_grad()
    def beam_search(self, images: Tensor, beam_size: int, max_len: int) -> list[tuple[list[int], Tensor | None, float]]:
        """Beam search for a batch of images [B, H, W, 3], all images and beams in one decoder step per word
        (models.beam: a hypothesis that emits EOS leaves the beam, which then shrinks, as in Xu et al.'s code).

        Per image: (token ids without EOS, alphas [T, L] of the steps that emitted them and the EOS, total
        log-probability). The best finished hypothesis wins (the earliest finished on a tie), else the best still
        running after max_len; no length normalisation (the total log-probability ranks them)."""
        feats, (h, c) = self.encode(images)
        feats = beam.expand(feats, beam_size)

        def step(token: Tensor, state: tuple[Tensor, Tensor], t: int):
            logits, state, alpha, _, _ = self.step(token, state, feats)
            return logits, state, alpha

        best = beam.beam_search(step, (beam.expand(h, beam_size), beam.expand(c, beam_size)), images.shape[0],
                                beam_size, max_len, bos=BOS, eos=EOS, pad=PAD, stop_early=stops_early(images.device),
                                device=images.device)
        out = {k: v.cpu() for k, v in best.items() if v is not None}
        results = []
        for b in range(images.shape[0]):
            steps = int(out["steps"][b])
            n = steps - int(out["ended"][b])                      # the words without the EOS
            maps = out["extras"][b, :steps] if "extras" in out and steps else None
            results.append((out["tokens"][b, :n].tolist(), maps, float(out["score"][b])))
        return results
