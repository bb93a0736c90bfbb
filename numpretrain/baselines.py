"""The yardsticks a language model must beat: unigram and bigram models of the same text.

Both are fitted on the training tokens with add-alpha smoothing and scored by their
cross-entropy (nats per token) on the validation tokens, the same measure as the
model's validation loss.
"""

import numpy as np

SMOOTHING = 0.1  # add-alpha: small, so frequent events keep their weight, but no zero probabilities


def unigram_loss(train_ids, val_ids, vocab_size, alpha=SMOOTHING):
    counts = np.bincount(train_ids, minlength=vocab_size) + alpha
    logp = np.log(counts / counts.sum())
    return float(-logp[val_ids].mean())


def bigram_loss(train_ids, val_ids, vocab_size, alpha=SMOOTHING):
    counts = np.full((vocab_size, vocab_size), alpha)
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-logp[val_ids[:-1], val_ids[1:]].mean())
