"""GPT: a decoder-only Transformer trained to predict the next token, and text generation.

Read it top to bottom: the config, the model (embeddings -> causal blocks -> final
LayerNorm -> LM head tied to the token embedding), then generation with a KV cache.
Parameter names follow the Hugging Face GPT-2 checkpoint (wte, wpe, h.0.attn.c_attn,
ln_f), so real weights load by a name table (numpretrain/storage/hf.py), not a rewrite.
"""

from dataclasses import dataclass

import numpy as np

from numpretrain.autograd import functional as F
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import check_ids_in_range
from numpretrain.models.config import ModelConfig
from numpretrain.nn import Dropout, Embedding, KVCache, LayerNorm, Module, ModuleList, TransformerBlock, init_weights


@dataclass
class GPTConfig(ModelConfig):
    model_type = "gpt"           # in config.json; not a dataclass field (no annotation)
    size_fields = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")

    vocab_size: int = 512        # tokens in the vocabulary (the tokenizer decides)
    block_size: int = 64         # context length in tokens: the longest sequence the model sees
    n_layer: int = 4             # Transformer blocks
    n_head: int = 4              # attention heads per block
    n_embd: int = 128            # model width C, split evenly among the attention heads
    dropout: float = 0.0         # dropout probability on embeddings, attention probabilities
                                 # and residual branches
    bias: bool = True            # biases in the Linear layers (the LayerNorms keep their shift, unlike nanoGPT's bias=False)
    norm_first: bool = True      # True: GPT-2 (pre-LN, final ln_f); False: GPT-1 (post-LN, no ln_f)
    layer_norm_eps: float = 1e-5
    tie_weights: bool = True     # the LM head reuses the token embedding matrix


class GPT(Module):
    def __init__(self, config, rng=None):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = Embedding(config.vocab_size, C)           # token embedding (V, C)
        self.wpe = Embedding(config.block_size, C)           # learned position embedding (T, C)
        self.drop = Dropout(config.dropout)
        self.h = ModuleList([
            TransformerBlock(C, config.n_head, dropout=config.dropout, bias=config.bias,
                             norm_first=config.norm_first, causal=True,
                             layer_norm_eps=config.layer_norm_eps, approximate="tanh")
            for _ in range(config.n_layer)])
        # GPT-2 normalises once more after the last pre-LN block; GPT-1's post-LN blocks end normalised.
        self.ln_f = LayerNorm(C, eps=config.layer_norm_eps) if config.norm_first else None
        if not config.tie_weights:
            self.lm_head = Embedding(config.vocab_size, C)   # an untied (V, C) output matrix
        init_weights(self, rng=rng if rng is not None else np.random.default_rng(0),
                     residual_layers=config.n_layer)

    @property
    def output_embedding(self):
        """The (V, C) matrix the LM head multiplies by: the token embedding itself when tied."""
        return self.wte.weight if self.config.tie_weights else self.lm_head.weight

    def check_ids(self, ids, past_length=0):
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"GPT expects token ids as an integer array of shape (B, T), got "
                             f"shape {ids.shape} and dtype {ids.dtype}")
        check_ids_in_range(ids, self.config.vocab_size, where="GPT")
        if past_length + ids.shape[1] > self.config.block_size:
            raise ValueError(f"sequence of {past_length + ids.shape[1]} tokens is longer than "
                             f"block_size={self.config.block_size}")
        return ids

    def hidden_states(self, ids, key_padding_mask=None, kv_caches=None):
        """Token ids (B, T) -> the last block's output, normalised by ln_f in the pre-LN form (B, T, C)."""
        past = 0 if kv_caches is None or kv_caches[0].k is None else kv_caches[0].k.shape[2]
        ids = self.check_ids(ids, past)
        B, T = ids.shape
        positions = np.arange(past, past + T)                          # (T,)
        x = self.wte(ids) + self.wpe(positions)                        # (B, T, C)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, key_padding_mask=key_padding_mask,
                      kv_cache=None if kv_caches is None else kv_caches[i])   # (B, T, C)
        if self.ln_f is not None:
            x = self.ln_f(x)                                           # (B, T, C)
        return x

    def forward(self, ids, targets=None, key_padding_mask=None):
        """ids (B, T) -> logits (B, T, V), and the mean cross-entropy when targets (B, T) are given."""
        x = self.hidden_states(ids, key_padding_mask)                  # (B, T, C)
        logits = (x @ self.output_embedding.T).named("logits")          # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    # ----- generation -----

    def next_token_logits(self, ids, kv_caches=None):
        """Logits (B, V) of the token after `ids` (B, T), as float arrays, without building a graph.

        With kv_caches, `ids` are only the new tokens; the caches hold keys and values of the past.
        """
        with no_grad():
            x = self.hidden_states(ids, kv_caches=kv_caches).data[:, -1]   # (B, C)
            return x @ self.output_embedding.data.T                        # (B, V)

    def generate(self, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                 greedy=False, use_cache=True):
        """Continue `ids` (B, T) by max_new_tokens tokens -> (B, T + max_new_tokens).

        greedy (or temperature 0) takes the most likely token; otherwise sample from the
        softmax of logits / temperature, keeping only the top_k tokens and/or the smallest
        set whose probability reaches top_p. With the KV cache each new token costs one
        position of attention; once the text is longer than block_size, the context is
        cropped to its last block_size tokens.
        """
        ids = self.check_ids(np.asarray(ids, dtype=np.int64)[None] if np.ndim(ids) == 1 else ids)
        if ids.shape[1] == 0:
            raise ValueError("generate needs a prompt of at least one token")
        rng = np.random.default_rng(seed)
        block_size = self.config.block_size
        was_training = self.training
        self.eval()
        caches = KVCache.for_layers(len(self.h)) if use_cache else None
        seen = 0                                     # tokens whose keys and values are in the caches
        try:
            for _ in range(max_new_tokens):
                if use_cache and ids.shape[1] <= block_size:
                    logits = self.next_token_logits(ids[:, seen:], caches)      # only the new tokens
                    seen = ids.shape[1]
                else:
                    # Past block_size the positions shift at every step, so nothing cached stays
                    # valid: run the cropped context (the last block_size tokens) in full.
                    logits = self.next_token_logits(ids[:, -block_size:])
                next_ids = sample_next(logits, rng, temperature, top_k, top_p, greedy)   # (B, 1)
                ids = np.concatenate([ids, next_ids], axis=1)
        finally:
            self.train(was_training)
        return ids


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None, greedy=False):
    """Pick one token per row of logits (B, V) -> (B, 1)."""
    if not 0 <= temperature < float("inf"):    # NaN too: it would turn every probability into NaN
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if greedy or temperature == 0:
        return logits.argmax(axis=-1)[:, None]
    logits = logits.astype(np.float64) / temperature
    if top_k is not None:
        top_k = min(int(top_k), logits.shape[-1])
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs, _ = stable_softmax(logits)                                     # (B, V)
    if top_p is not None and top_p < 1:
        # keep the most probable tokens until their total reaches top_p (always at least one)
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # drop a token when the tokens before it already reach top_p
        drop = np.cumsum(sorted_probs, axis=-1) - sorted_probs >= top_p
        sorted_probs[drop] = 0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_probs, axis=-1)
        probs /= probs.sum(axis=-1, keepdims=True)
    cumulative = probs.cumsum(axis=-1)
    draws = rng.random((len(probs), 1))
    choice = (cumulative < draws * cumulative[:, -1:]).sum(axis=-1)
    return np.minimum(choice, probs.shape[-1] - 1)[:, None]
