"""The position-wise feed-forward network (MLP) and the Transformer block, pre-LN and post-LN.

    pre-LN  (GPT-2, norm_first=True):   x = x + attn(ln_1(x));   x = x + mlp(ln_2(x))
    post-LN (GPT-1, BERT, the original Transformer, norm_first=False):
                                        x = ln_1(x + attn(x));   x = ln_2(x + mlp(x))

Pre-LN keeps an untouched residual path from input to output, which is why GPT-2 can
train deep stacks without warmup tricks (and needs a final LayerNorm, `ln_f`, after the
last block); post-LN normalises after each addition, as GPT-1 and BERT were trained.
Dropout sits on each branch's output, before the residual addition, in both forms.
"""

from numpretrain.autograd.ops import as_tensor
from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import check_heads_divide_width
from numpretrain.nn import decode
from numpretrain.nn.layers import GELU, Dropout, LayerNorm, Linear, _check_positive_int, _check_probability
from numpretrain.nn.module import Module
from numpretrain.nn.self_attention import SelfAttention


class MLP(Module):
    """x (B, T, C) -> c_fc (C -> hidden, default 4C) -> GELU -> c_proj (hidden -> C) -> dropout.

    The hidden activation (after GELU) is named `<path>.fc`, e.g. `h.0.mlp.fc`.
    """

    def __init__(self, n_embd, hidden=None, dropout=0.0, bias=True, approximate="tanh"):
        _check_positive_int("MLP", "n_embd", n_embd)
        hidden = 4 * n_embd if hidden is None else hidden
        _check_positive_int("MLP", "hidden", hidden)
        _check_probability("MLP", "dropout", dropout)
        self.n_embd, self.hidden = int(n_embd), int(hidden)
        self.c_fc = Linear(n_embd, hidden, bias=bias)
        self.gelu = GELU(approximate)
        self.c_proj = Linear(hidden, n_embd, bias=bias)
        self.c_proj.residual_projection = True   # writes into the residual stream: GPT-2 scales its init
        self.dropout = Dropout(dropout)

    def extra_repr(self):
        return f"{self.n_embd} -> {self.hidden} -> {self.n_embd}"

    def forward(self, x):
        h = self.gelu(self.c_fc(x))             # (B, T, 4C)
        h = self.name_output(h, "fc")           # (B, T, 4C), the hidden activation
        return self.dropout(self.c_proj(h))     # (B, T, C)


class TransformerBlock(Module):
    """One Transformer layer: children ln_1, attn, ln_2, mlp (GPT-2's names).

    forward(x (B, T, C), key_padding_mask (B, T) bool True at real tokens, kv_cache) -> (B, T, C),
    named by the block's path (`h.0`).
    """

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True, norm_first=True, causal=True,
                 layer_norm_eps=1e-5, approximate="tanh", mlp_hidden=None):
        _check_positive_int("TransformerBlock", "n_embd", n_embd)
        _check_positive_int("TransformerBlock", "n_head", n_head)
        check_heads_divide_width(n_embd, n_head, "TransformerBlock")
        _check_probability("TransformerBlock", "dropout", dropout)
        self.n_embd = int(n_embd)
        self.norm_first = bool(norm_first)
        self.ln_1 = LayerNorm(n_embd, eps=layer_norm_eps)
        self.attn = SelfAttention(n_embd, n_head, dropout=dropout, bias=bias, causal=causal)
        self.ln_2 = LayerNorm(n_embd, eps=layer_norm_eps)
        self.mlp = MLP(n_embd, hidden=mlp_hidden, dropout=dropout, bias=bias, approximate=approximate)

    def extra_repr(self):
        return f"{'pre-LN' if self.norm_first else 'post-LN'}"

    def forward(self, x, key_padding_mask=None, kv_cache=None):
        x = as_tensor(x)                                                    # (B, T, C)
        if kv_cache is not None and not self.training:                      # generation: plain NumPy
            return self.name_output(Tensor(decode.block(x.data, self, kv_cache, key_padding_mask)))
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), key_padding_mask, kv_cache)     # (B, T, C)
            x = x + self.mlp(self.ln_2(x))                                  # (B, T, C)
        else:
            x = self.ln_1(x + self.attn(x, key_padding_mask, kv_cache))     # (B, T, C)
            x = self.ln_2(x + self.mlp(x))                                  # (B, T, C)
        return self.name_output(x)                                          # (B, T, C)
