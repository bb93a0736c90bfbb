"""The benchmark's PyTorch twins of numpretrain's GPT and BERT: same float32 model, same shapes.

Written the way a PyTorch user would write them in eager mode: nn.Linear, nn.LayerNorm,
nn.Embedding, F.gelu, F.cross_entropy and torch.optim.AdamW, with the attention math spelled
out (q k^T / sqrt(hs), masked_fill(-inf), softmax, @ v) rather than calling
F.scaled_dot_product_attention, because numpretrain spells it out too. The peer a speed-minded
PyTorch user writes, with SDPA, is torch_sdpa_models.py: the same classes with another `attend`.

Parameter names match numpretrain's (GPT-2's and Hugging Face BERT's), so `copy_weights`
copies a numpretrain model's weights in by name (nn.Linear stores (out, in); numpretrain's
Linear (in, out): those are transposed), and the benchmark checks that both models give
the same loss before timing them.

Only imported when torch is installed; bench.py runs without it.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    """q, k, v from one projection, the KV cache, then `attend` (spelled out here; SDPA in
    torch_sdpa_models.py) and the output projection."""

    def __init__(self, n_embd, n_head, causal, bias=True):
        super().__init__()
        self.n_head, self.causal = n_head, causal
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x, key_padding_mask=None, kv_cache=None):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                         # (B, T, C) each
        q = q.view(B, T, nh, hs).transpose(1, 2)                         # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        past = 0
        if kv_cache is not None:                                         # generation: append, attend to all
            past = kv_cache[0].shape[2] if kv_cache[0] is not None else 0
            if past:
                k, v = torch.cat([kv_cache[0], k], dim=2), torch.cat([kv_cache[1], v], dim=2)
            kv_cache[0], kv_cache[1] = k, v
        y = self.attend(q, k, v, past, key_padding_mask)                 # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))           # (B, T, C)

    def attend(self, q, k, v, past, key_padding_mask):
        """q (B, nh, T, hs) attends to k, v (B, nh, Tk, hs), of which the first `past` are cached."""
        T, Tk, hs = q.shape[2], k.shape[2], q.shape[3]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))       # (B, nh, T, Tk)
        if self.causal and T > 1:
            allowed = torch.ones(T, Tk, dtype=torch.bool).tril(diagonal=past)
            scores = scores.masked_fill(~allowed, float("-inf"))
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        probs = F.softmax(scores, dim=-1)
        return probs @ v


class MLP(nn.Module):
    def __init__(self, n_embd, hidden, approximate, bias=True):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.approximate = approximate

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, norm_first, causal, eps, approximate, hidden, attention, bias=True):
        super().__init__()
        self.norm_first = norm_first
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = attention(n_embd, n_head, causal, bias)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd, hidden, approximate, bias)

    def forward(self, x, key_padding_mask=None, kv_cache=None):
        if self.norm_first:                                              # GPT-2
            x = x + self.attn(self.ln_1(x), key_padding_mask, kv_cache)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, key_padding_mask))                # BERT (post-LN)
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """numpretrain.GPT with norm_first=True, tied weights, dropout 0; bias=False as GPTConfig(bias=False)."""
    attention = SelfAttention                                            # torch_sdpa_models: SDPA

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, bias=True):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, True, True, 1e-5, "tanh", 4 * n_embd, self.attention, bias)
                                for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)

    def forward(self, ids, targets=None, kv_caches=None):
        B, T = ids.shape
        past = 0 if kv_caches is None or kv_caches[0][0] is None else kv_caches[0][0].shape[2]
        x = self.wte(ids) + self.wpe(torch.arange(past, past + T))
        for i, block in enumerate(self.h):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i])
        x = self.ln_f(x)
        if targets is None:                                              # generation: last position only
            return x[:, -1] @ self.wte.weight.T
        logits = x @ self.wte.weight.T                                   # (B, T, V), tied
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    @torch.no_grad()
    def generate(self, ids, max_new_tokens, use_cache=True):
        """Greedy continuation of ids (1, T), as numpretrain's generate(greedy=True)."""
        caches = [[None, None] for _ in self.h] if use_cache else None
        seen = 0
        for _ in range(max_new_tokens):
            logits = self(ids[:, seen:] if use_cache else ids, kv_caches=caches)
            seen = ids.shape[1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        return ids


class BertForPreTraining(nn.Module):
    """numpretrain.BertForPreTraining with dropout 0: post-LN, exact GELU, eps 1e-12, tied MLM decoder."""
    attention = SelfAttention

    def __init__(self, vocab_size, max_position, n_layer, n_head, n_embd, intermediate_size):
        super().__init__()
        eps = 1e-12
        self.word_embeddings = nn.Embedding(vocab_size, n_embd)
        self.position_embeddings = nn.Embedding(max_position, n_embd)
        self.token_type_embeddings = nn.Embedding(2, n_embd)
        self.emb_LayerNorm = nn.LayerNorm(n_embd, eps=eps)
        self.layer = nn.ModuleList([Block(n_embd, n_head, False, False, eps, "none", intermediate_size,
                                          self.attention)
                                    for _ in range(n_layer)])
        self.pooler = nn.Linear(n_embd, n_embd)
        self.mlm_dense = nn.Linear(n_embd, n_embd)
        self.mlm_LayerNorm = nn.LayerNorm(n_embd, eps=eps)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.nsp = nn.Linear(n_embd, 2)

    def forward(self, ids, token_type_ids, attention_mask, mlm_rows, mlm_cols, mlm_targets, nsp_labels):
        T = ids.shape[1]
        x = self.word_embeddings(ids) + self.token_type_embeddings(token_type_ids)
        x = self.emb_LayerNorm(x + self.position_embeddings(torch.arange(T)))
        for block in self.layer:
            x = block(x, key_padding_mask=attention_mask)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        h = F.gelu(self.mlm_dense(x[mlm_rows, mlm_cols]))                # only the labelled positions
        logits = self.mlm_LayerNorm(h) @ self.word_embeddings.weight.T + self.mlm_bias
        return F.cross_entropy(logits, mlm_targets) + F.cross_entropy(self.nsp(pooled), nsp_labels)


# numpretrain name -> this model's name, where they differ (BERT's modules are nested there)
def _torch_name(name):
    if name.startswith("bert.embeddings.LayerNorm"):
        return name.replace("bert.embeddings.LayerNorm", "emb_LayerNorm")
    for prefix in ("bert.embeddings.", "bert."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def copy_weights(np_model, torch_model):
    """Copy every parameter of a numpretrain model into its twin, by name (Linear weights transposed)."""
    params = dict(torch_model.named_parameters())
    linear_weights = {f"{path}.weight" for path, m in torch_model.named_modules() if isinstance(m, nn.Linear)}
    copied = set()
    with torch.no_grad():
        for name, p in np_model.named_parameters():
            target = params[_torch_name(name)]
            data = np.asarray(p.data, dtype=np.float32)
            if _torch_name(name) in linear_weights:
                data = data.T                                            # Linear: (in, out) -> (out, in)
            target.copy_(torch.from_numpy(np.ascontiguousarray(data)))
            copied.add(_torch_name(name))
    missing = set(params) - copied
    if missing:
        raise ValueError(f"copy_weights: no numpretrain parameter for {sorted(missing)}")
