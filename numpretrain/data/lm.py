"""Causal language-model batches: random windows of a token stream.

A GPT learns to predict every next token, so one training example is a
window of block_size + 1 consecutive tokens: x is the window without its last
token, y the window without its first (y[t] is the token after x[t]).

The token stream is cut once into a training split and a held-out validation
split (the last `val_fraction` of the tokens, as nanoGPT does), so validation
text is never trained on. Training windows start anywhere in the training
split; validation batches are drawn once from a fixed seed, so every
evaluation during a run (and across runs) sees the very same windows.
"""

import numpy as np

from numpretrain.errors import ConfigError, DataError, check_ids_in_range

VAL_FRACTION = 0.1  # nanoGPT's default held-out share (its shakespeare_char prepare.py)


def windows_at(tokens, starts, block_size):
    """The windows of `block_size + 1` tokens beginning at `starts` -> (x, y), each (B, T) int64.

    No loop over the batch: one (B, T+1) index matrix built by broadcasting.
    """
    index = starts[:, None] + np.arange(block_size + 1)[None, :]  # (B, T+1)
    window = tokens[index].astype(np.int64)  # (B, T+1)
    return window[:, :-1], window[:, 1:]  # (B, T), (B, T)


class CausalLMDataset:
    """A 1-D token array split into train and validation parts, served as (x, y) windows."""

    def __init__(self, tokens, val_fraction=VAL_FRACTION, vocab_size=None, source="<tokens>"):
        """`tokens`: 1-D integer array (or list) of token ids. `source` names it in error messages.

        With `vocab_size`, every id must lie in [0, vocab_size).
        """
        tokens = np.asarray(tokens)
        if tokens.ndim != 1:
            raise DataError(f"{source}: expected a 1-D array of token ids, got shape {tokens.shape}")
        if tokens.size == 0:
            raise DataError(f"{source}: the corpus is empty (no tokens)")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise DataError(f"{source}: token ids must be integers, got dtype {tokens.dtype}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        check_ids_in_range(tokens, vocab_size, where=source, error=DataError)
        n_val = int(round(len(tokens) * val_fraction))
        self.source = source
        self.val_fraction = val_fraction
        self.train_tokens = tokens[: len(tokens) - n_val]
        self.val_tokens = tokens[len(tokens) - n_val :]

    def split_tokens(self, split):
        if split == "train":
            return self.train_tokens
        if split == "val":
            return self.val_tokens
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")

    def check_block_size(self, block_size, split="train"):
        """Raise DataError unless the split holds at least one window of block_size + 1 tokens."""
        if block_size < 1:
            raise ConfigError(f"block_size must be at least 1, got {block_size}")
        n = len(self.split_tokens(split))
        if n < block_size + 1:
            total = len(self.train_tokens) + len(self.val_tokens)
            raise DataError(
                f"{self.source}: the {split} split has {n} tokens, fewer than one block of "
                f"block_size + 1 = {block_size + 1} tokens (the corpus has {total} tokens, "
                f"val_fraction={self.val_fraction}); use a longer text or a smaller block size"
            )

    def get_batch(self, rng, batch_size, block_size, split="train"):
        """`batch_size` windows at uniformly random positions of the split -> (x, y), each (B, T) int64."""
        self.check_block_size(block_size, split)
        tokens = self.split_tokens(split)
        # A window of T+1 tokens may start at 0 .. len - (T+1), inclusive.
        starts = rng.integers(0, len(tokens) - block_size, size=batch_size)  # (B,)
        return windows_at(tokens, starts, block_size)

    def fixed_validation_batches(self, n_batches, batch_size, block_size, seed=0):
        """The same `n_batches` validation batches for every call with the same arguments."""
        self.check_block_size(block_size, "val")
        rng = np.random.default_rng(seed)
        return [self.get_batch(rng, batch_size, block_size, split="val") for _ in range(n_batches)]

    def __repr__(self):
        return f"CausalLMDataset(train={len(self.train_tokens)} tokens, val={len(self.val_tokens)} tokens)"
