"""Greedy decoding without an early stop (the GPU path: no read of the device per token) returns what
decoding with a per-token early stop (the CPU path) returns."""
from __future__ import annotations

import pytest
import torch

from attnbench.models.seq2seq import EOS, PAD, RNNSeq2Seq
from attnbench.models.transformer import TransformerSeq2Seq

MAX_LEN = 15


def _rnn():
    return RNNSeq2Seq(30, 30, emb_dim=12, hidden=16, dropout=0.0, attention="additive")


def _transformer():
    return TransformerSeq2Seq(30, 30, d_model=16, heads=2, enc_layers=1, dec_layers=1, ffn_dim=32, dropout=0.0)


# initial weights and output scale chosen so that, over a sweep of EOS biases, whole batches end at varied steps before MAX_LEN
@pytest.mark.parametrize("build, seed, scale", [(_rnn, 2, 8.0), (_transformer, 3, 2.0)], ids=["rnn", "transformer"])
def test_decoding_to_max_len_and_trimming_equals_stopping_early(build, seed, scale):
    torch.manual_seed(seed)
    model = build().eval()
    with torch.no_grad():
        model.out.weight.mul_(scale)
    torch.manual_seed(4)
    src = torch.randint(4, 30, (24, 7))
    src_len = torch.full((24,), 7)
    trimmed = 0
    for eos_bias in [i * 0.5 for i in range(13)]:
        with torch.no_grad():
            model.out.bias.zero_()
            model.out.bias[EOS] = eos_bias
        early = model.greedy(src, src_len, max_len=MAX_LEN, stop_early=True)
        late = model.greedy(src, src_len, max_len=MAX_LEN, stop_early=False)
        assert torch.equal(early[0], late[0]), f"EOS bias {eos_bias}"
        assert torch.allclose(early[1], late[1]), f"EOS bias {eos_bias}"
        ended = (early[0] == EOS).any(1)
        if ended.all() and early[0].size(1) < MAX_LEN and len(set((early[0] != PAD).sum(1).tolist())) > 1:
            trimmed += 1   # the no-early-stop path had all-PAD columns to cut, and lengths varied
    assert trimmed >= 1, "the sweep never produced a batch that ended early with varied lengths"
