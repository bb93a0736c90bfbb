"""Multi-head self-attention as a module, and the KV cache that makes generation cheap.

    qkv = x @ W_attn + b_attn           (B, T, 3C)   one GEMM for q, k and v (columns q | k | v, as GPT-2)
    y   = attention(q, k, v, masks)     (B, T, C)    heads of size hs = C / nh, merged back
    out = dropout(y @ W_proj + b_proj)  (B, T, C)

The attention in the middle takes one of three paths, all computing the same thing:

- fused (the default): `numpretrain.autograd.attention.self_attention`, one graph node with a
  hand-derived backward; the fastest.
- composite: the same math from primitive ops (reshape, transpose, matmul, masked_fill,
  softmax, dropout), taken when a `capture(...)` asks for `<path>.probs` or when
  `keep_probs_tensor` is set, so that the probabilities are a Tensor with a gradient of
  their own. tests/test_transformer.py checks that both paths agree in float64.
- cached (generation, under `no_grad()` with a `KVCache`): only the new positions' q, k, v
  are computed; their k and v are appended to the cache and the new queries attend to
  every cached key, so each new token costs one position of attention, not a re-run.

With `keep_probs = True` the module keeps the last probabilities as an ndarray in
`last_probs` (B, nh, T, Tk), for plotting.
"""

import math

import numpy as np

from numpretrain.autograd import functional as F
from numpretrain.autograd.attention import allowed_keys, self_attention
from numpretrain.autograd.capture import wants as capture_wants
from numpretrain.autograd.ops import as_tensor
from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import check_heads_divide_width
from numpretrain.nn import decode
from numpretrain.nn.layers import Dropout, Linear, _check_positive_int, _check_probability
from numpretrain.nn.module import Module

KV_CACHE_MIN_CAPACITY = 16  # positions allocated at first; the storage then doubles as needed


class KVCache:
    """The keys and values one attention layer has seen so far, for generation.

    k, v: (B, nh, T_past, hs) arrays, None before the first step.
    key_padding_mask: (B, T_past) bool (True at real tokens), or None when every key is real.
    k and v are views into storage that doubles when full, so appending a token copies
    one position, not the whole cache. Assigning k and v directly is allowed (the next
    append copies them into fresh storage).
    """

    def __init__(self):
        self.k = None
        self.v = None
        self.key_padding_mask = None
        self._k_store = self._v_store = None   # (B, nh, capacity, hs)

    @classmethod
    def for_layers(cls, n_layer):
        """One empty cache per attention layer, the way a model makes them:
        `caches = KVCache.for_layers(len(self.h))`."""
        return [cls() for _ in range(n_layer)]

    def __len__(self):
        return 0 if self.k is None else self.k.shape[2]

    def reset(self):
        """Forget everything (e.g. when the context slides past the model's block size)."""
        self.__init__()

    def append(self, k, v, key_padding_mask=None):
        """Add the new positions' k, v (B, nh, T_new, hs); returns all keys and values so far."""
        past, new = len(self), k.shape[2]
        total = past + new
        store = self._k_store
        fits = (store is not None and self.k is not None and self.k.base is store
                and store.shape[:2] + store.shape[3:] == k.shape[:2] + k.shape[3:]
                and store.dtype == k.dtype and total <= store.shape[2])
        if not fits:
            capacity = max(2 * total, KV_CACHE_MIN_CAPACITY)
            shape = k.shape[:2] + (capacity,) + k.shape[3:]
            self._k_store, self._v_store = np.empty(shape, k.dtype), np.empty(shape, v.dtype)
            if past:
                self._k_store[:, :, :past] = self.k
                self._v_store[:, :, :past] = self.v
        self._k_store[:, :, past:total] = k
        self._v_store[:, :, past:total] = v
        self.k, self.v = self._k_store[:, :, :total], self._v_store[:, :, :total]   # (B, nh, T_past + T_new, hs)

        if key_padding_mask is not None or self.key_padding_mask is not None:
            B = k.shape[0]
            old = self.key_padding_mask if self.key_padding_mask is not None else np.ones((B, past), dtype=bool)
            new_mask = key_padding_mask if key_padding_mask is not None else np.ones((B, new), dtype=bool)
            self.key_padding_mask = np.concatenate([old, new_mask], axis=1)                # (B, T_past + T_new)
        return self.k, self.v


def _read_only(array):
    """A read-only view: the fused op's backward still needs the probabilities it kept."""
    view = array.view()
    view.flags.writeable = False
    return view


def _as_mask(key_padding_mask):
    mask = np.asarray(key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask)
    if mask.dtype != bool:
        raise TypeError(f"key_padding_mask must be boolean (True at real tokens, False at padding), got dtype "
                        f"{mask.dtype}; convert it, e.g. attention_mask.astype(bool)")
    return mask


class SelfAttention(Module):
    """Multi-head self-attention: x (B, T, C) -> (B, T, C), with causal and key-padding masks.

    Children: c_attn (Linear C -> 3C, the fused q|k|v projection), c_proj (Linear C -> C),
    attn_dropout (on the probabilities), resid_dropout (on the output, after c_proj).
    """

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True, causal=False):
        _check_positive_int("SelfAttention", "n_embd", n_embd)
        _check_positive_int("SelfAttention", "n_head", n_head)
        check_heads_divide_width(n_embd, n_head, "SelfAttention")
        _check_probability("SelfAttention", "dropout", dropout)
        self.n_embd, self.n_head, self.head_size = int(n_embd), int(n_head), int(n_embd) // int(n_head)
        self.causal = bool(causal)
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.c_proj.residual_projection = True   # writes into the residual stream: GPT-2 scales its init
        self.attn_dropout = Dropout(dropout)
        self.resid_dropout = Dropout(dropout)
        self.keep_probs = False          # keep the last probabilities as an ndarray in last_probs
        self.keep_probs_tensor = False   # take the composite path; the probs Tensor is kept in last_probs_tensor
        self.last_probs = None           # (B, nh, T, Tk) ndarray
        self.last_probs_tensor = None

    def extra_repr(self):
        return (f"n_embd={self.n_embd}, n_head={self.n_head}, dropout={self.attn_dropout.p:g}, "
                f"causal={self.causal}")

    def forward(self, x, key_padding_mask=None, kv_cache=None):
        """x: (B, T, C); key_padding_mask: (B, T) bool, True at real tokens; kv_cache: a KVCache
        (generation under no_grad) -> (B, T, C)."""
        x = as_tensor(x)
        if kv_cache is not None:
            return self._forward_cached(x, key_padding_mask, kv_cache)     # (checks its own input)
        key_padding_mask = self.check_input(x.shape, key_padding_mask)

        qkv = self.c_attn(x)                                            # (B, T, 3C)
        if self.keep_probs_tensor or capture_wants(self._probs_name()):
            y, probs = self._attend_composite(qkv, key_padding_mask)   # (B, T, C), (B, nh, T, T)
        else:
            p = self.attn_dropout.p
            use_rng = self.training and p > 0
            y, probs = self_attention(qkv, self.n_head, self.causal, key_padding_mask,
                                      p, self.rng if use_rng else None, self.training)
        if self.keep_probs:
            self.last_probs = _read_only(probs)                          # (B, nh, T, T)
        y = self.name_output(y, "y")                                    # (B, T, C), heads merged
        return self.resid_dropout(self.c_proj(y))                      # (B, T, C)

    def check_input(self, shape, key_padding_mask):
        """Fail clearly unless x is (B, T, n_embd) and the mask None or (B, T) bool; returns the mask."""
        if len(shape) != 3 or shape[-1] != self.n_embd:
            raise ValueError(f"SelfAttention {self.path!r}: expected x of shape (B, T, {self.n_embd}), got {shape}")
        if key_padding_mask is not None:
            key_padding_mask = _as_mask(key_padding_mask)
            if key_padding_mask.shape != shape[:2]:
                raise ValueError(f"SelfAttention {self.path!r}: key_padding_mask must have shape {shape[:2]} "
                                 f"(one flag per position of x), got {key_padding_mask.shape}")
        return key_padding_mask

    def _probs_name(self):
        path = self.path
        return f"{path}.probs" if path else "probs"

    def _attend_composite(self, qkv, key_padding_mask):
        """The fused op's math from primitive ops; the probabilities become a named Tensor."""
        B, T, three_C = qkv.shape
        nh, hs = self.n_head, self.head_size
        qkv_heads = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)   # (3, B, nh, T, hs)
        q, k, v = qkv_heads[0], qkv_heads[1], qkv_heads[2]                  # each (B, nh, T, hs)
        scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))      # (B, nh, T, T)
        allowed = allowed_keys(T, T, self.causal, key_padding_mask)         # (B or 1, 1, T, T) or None
        if allowed is not None:
            has_key = allowed.any(axis=-1, keepdims=True)                   # rows with a key to attend to
            scores = F.masked_fill(scores, ~allowed & has_key, -np.inf)    # (B, nh, T, T)
        probs = F.softmax(scores, axis=-1)                                  # (B, nh, T, T)
        if allowed is not None and not has_key.all():
            probs = F.masked_fill(probs, ~allowed, 0.0)                     # a row with no key: zeros, not NaN
        probs = self.name_output(probs, "probs")
        if self.keep_probs_tensor:
            self.last_probs_tensor = probs
        y = self.attn_dropout(probs) @ v                                    # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, three_C // 3)             # (B, T, C)
        return y, probs.data

    def _forward_cached(self, x, key_padding_mask, cache):
        """Attend from the new positions x (B, T_new, C) to every cached key plus their own."""
        key_padding_mask = decode.check_cached_input(self, x.shape, key_padding_mask)
        y = decode.attention(x.data, self, cache, key_padding_mask)   # (B, T, C), plain NumPy (nn/decode.py)
        return self.resid_dropout(Tensor(y))                            # (B, T, C)

    def record_probs(self, probs):
        """Keep the probabilities (B, nh, T, Tk) for `keep_probs` and for a capture that asks for them."""
        if self.keep_probs:
            self.last_probs = probs
        if capture_wants(self._probs_name()):
            self.name_output(Tensor(probs), "probs")
