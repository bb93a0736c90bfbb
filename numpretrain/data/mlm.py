"""Masked-language-model inputs, as in the BERT paper and its reference script.

For every sequence of a batch (following create_masked_lm_predictions in
google-research/bert's create_pretraining_data.py):
  1. choose round(n * mask_prob) of its n ordinary (non-special) tokens, at
     least 1 and at most `max_predictions`, uniformly at random;
  2. of the chosen tokens, replace 80% with [MASK], 10% with a random
     ordinary token, and leave 10% unchanged (so the model cannot learn that
     only [MASK] positions matter);
  3. the label is the original token at chosen positions and IGNORE_INDEX
     everywhere else, so the loss is taken only where a prediction was asked.

Two deliberate differences from the reference: n counts only the ordinary
tokens (the reference also counts [CLS] and [SEP], which it never chooses),
and random replacements are drawn from the ordinary vocabulary only (the
reference may draw [CLS] or [PAD]).

Whole-word masking (the reference's `do_whole_word_mask`) chooses whole words
instead of single tokens: a word is a token marked as a word start followed by
the tokens that continue it. Without word starts every token is a word of its
own, which is the default; for character-level Chinese the words come from a
word list (tokenizers/word_list.py, `pretrain-bert --words`), for byte-level BPE
from the tokenizer (BPETokenizer.word_starts).
"""

import numpy as np

from numpretrain.autograd.functional import IGNORE_INDEX  # label of positions without a prediction
from numpretrain.errors import ConfigError, DataError, check_ids_in_range
from numpretrain.tokenizers.special_tokens import FIRST_NON_SPECIAL_ID  # ids below it: [PAD] [UNK] [CLS] [SEP] [MASK]

# BERT paper, section 3.1 "Task #1: Masked LM": 15% of tokens are chosen, and
# of those 80% become [MASK], 10% a random token, 10% stay unchanged.
MASK_PROB = 0.15
MASK_REPLACE_PROB = 0.8
RANDOM_REPLACE_PROB = 0.1
# create_pretraining_data.py's --max_predictions_per_seq default.
MAX_PREDICTIONS_PER_SEQ = 20


def check_masking(mask_prob, max_predictions):
    """ConfigError unless 0 < mask_prob <= 1 (so not NaN) and max_predictions >= 1."""
    if not 0.0 < mask_prob <= 1.0:
        raise ConfigError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if max_predictions < 1:
        raise ConfigError(f"max_predictions must be at least 1, got {max_predictions}")


def count_to_predict(n_eligible, mask_prob, max_predictions):
    """How many tokens to choose per row: round(n * p), at least 1, at most max_predictions; 0 if n == 0."""
    n_eligible = np.asarray(n_eligible)
    k = np.clip(np.rint(n_eligible * mask_prob).astype(np.int64), 1, max_predictions)
    return np.where(n_eligible > 0, k, 0)


def choose_tokens(eligible, n_to_predict, rng):
    """Choose `n_to_predict[b]` eligible positions of each row b uniformly without replacement.

    eligible: (B, T) bool, n_to_predict: (B,) int -> chosen (B, T) bool.
    Vectorised: every eligible position gets a uniform random key, ineligible
    ones +inf; a position is chosen when its key ranks among the row's k smallest.
    """
    keys = np.where(eligible, rng.random(eligible.shape), np.inf)  # (B, T)
    order = np.argsort(keys, axis=1)  # (B, T) positions sorted by key
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(eligible.shape[1])[None, :], axis=1)  # (B, T) rank of each position
    return (rank < n_to_predict[:, None]) & eligible


def word_ids(eligible, word_starts):
    """Number the words of each row: (B, T) int, -1 at ineligible positions.

    A word begins at an eligible token marked as a word start, or at an
    eligible token right after an ineligible one (a word never spans [SEP]).
    """
    prev_eligible = np.zeros_like(eligible)
    prev_eligible[:, 1:] = eligible[:, :-1]
    begins = eligible & (word_starts | ~prev_eligible)  # (B, T)
    ids = np.cumsum(begins, axis=1) - 1  # (B, T)
    return np.where(eligible, ids, -1)


def choose_whole_words(eligible, word_starts, n_to_predict, rng):
    """Choose whole words until each row has `n_to_predict[b]` tokens (never more) -> (B, T) bool.

    The reference's greedy rule, per row: visit the words in random order and
    take a word when it fits in the remaining budget, skipping ones that do
    not. That rule is sequential, so this loops over rows (and words); it runs
    only when whole-word masking is asked for.
    """
    ids = word_ids(eligible, word_starts)  # (B, T)
    chosen = np.zeros_like(eligible)
    for b in range(eligible.shape[0]):
        n_words = int(ids[b].max()) + 1
        budget = int(n_to_predict[b])
        for w in rng.permutation(n_words):
            if budget == 0:
                break
            positions = np.flatnonzero(ids[b] == w)
            if len(positions) <= budget:
                chosen[b, positions] = True
                budget -= len(positions)
    return chosen


def mask_tokens(
    input_ids,
    rng,
    *,
    vocab_size,
    mask_id,
    first_non_special_id=FIRST_NON_SPECIAL_ID,
    special_mask=None,
    mask_prob=MASK_PROB,
    max_predictions=MAX_PREDICTIONS_PER_SEQ,
    word_starts=None,
):
    """BERT masking of a batch -> (masked_input_ids, labels), both (B, T) int64.

    input_ids:     (B, T) int token ids (padded rows are fine: [PAD] is special).
    rng:           numpy.random.Generator; the same state gives the same masks.
    vocab_size, mask_id, first_non_special_id: from the tokenizer; ids below
                   first_non_special_id are special and never chosen, random
                   replacements are drawn from [first_non_special_id, vocab_size).
    special_mask:  optional (B, T) bool, True where a token must not be chosen;
                   replaces the "id < first_non_special_id" rule when given.
    mask_prob:     share of the ordinary tokens chosen per row (BERT: 0.15).
    max_predictions: at most this many chosen per row.
    word_starts:   None for per-token masking; for whole-word masking a (B, T)
                   bool array, True where a token begins a word, or a function
                   mapping the (B, T) ids to that array (e.g. BPETokenizer.word_starts).
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise DataError(f"mask_tokens expects (B, T) token ids, got shape {input_ids.shape}")
    check_masking(mask_prob, max_predictions)
    if not first_non_special_id < vocab_size:
        raise ConfigError(f"no ordinary tokens: first_non_special_id={first_non_special_id}, vocab_size={vocab_size}")
    check_ids_in_range(input_ids, vocab_size, where="mask_tokens", error=DataError)

    if special_mask is None:
        eligible = input_ids >= first_non_special_id  # (B, T)
    else:
        eligible = ~np.asarray(special_mask, dtype=bool)  # (B, T)
    n_to_predict = count_to_predict(eligible.sum(axis=1), mask_prob, max_predictions)  # (B,)

    if word_starts is None:
        chosen = choose_tokens(eligible, n_to_predict, rng)  # (B, T)
    else:
        starts = word_starts(input_ids) if callable(word_starts) else word_starts
        chosen = choose_whole_words(eligible, np.asarray(starts, dtype=bool), n_to_predict, rng)

    # One uniform draw per position decides [MASK] / random / unchanged (80/10/10).
    # Drawing for every position, chosen or not, keeps the shapes fixed.
    u = rng.random(input_ids.shape)  # (B, T)
    to_mask = chosen & (u < MASK_REPLACE_PROB)
    to_random = chosen & (u >= MASK_REPLACE_PROB) & (u < MASK_REPLACE_PROB + RANDOM_REPLACE_PROB)
    random_tokens = rng.integers(first_non_special_id, vocab_size, size=input_ids.shape)  # (B, T)

    masked = input_ids.astype(np.int64)  # (B, T), a copy
    masked[to_mask] = mask_id
    masked[to_random] = random_tokens[to_random]
    labels = np.where(chosen, input_ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    return masked, labels
