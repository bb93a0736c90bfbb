"""The PyTorch peer a speed-minded user writes: torch_models.py's GPT and BERT with attention by
F.scaled_dot_product_attention (is_causal for GPT, a boolean padding mask for BERT).

Everything else is torch_models.py's (nn.Linear, nn.LayerNorm, F.gelu, F.cross_entropy; bias on
or off; `copy_weights` by name); workloads.py gives it torch.optim.AdamW(foreach=True). This is
the main PyTorch column of bench.py and the peer of charlm_parity.py; the hand-spelled twin
stays beside it as a second column.

Only imported when torch is installed.
"""

import torch
import torch.nn.functional as F

import torch_models
from torch_models import copy_weights  # noqa: F401  (the same name table)


class SelfAttention(torch_models.SelfAttention):
    def attend(self, q, k, v, past, key_padding_mask):
        """q (B, nh, T, hs) attends to k, v (B, nh, Tk, hs), of which the first `past` are cached."""
        T, Tk = q.shape[2], k.shape[2]
        mask, causal = None, self.causal and T > 1      # one new query sees every cached key
        if causal and past:                               # a chunk after a cache: the offset diagonal
            mask, causal = torch.ones(T, Tk, dtype=torch.bool).tril(diagonal=past), False
        if key_padding_mask is not None:                  # (B, Tk) True at real tokens
            padding = key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
            mask = padding if mask is None else mask & padding
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


class GPT(torch_models.GPT):
    attention = SelfAttention


class BertForPreTraining(torch_models.BertForPreTraining):
    attention = SelfAttention
