"""Word boundaries in character-level text, for whole-word masking: forward maximum matching.

A character tokenizer gives one token per character, and Chinese puts no space between
words, so where a word starts has to come from a word list. The classic way to cut
text with one is forward maximum matching: from the left, take the longest word of
the list that starts here (a character alone when none does), and go on after it.
It is the simplest segmenter there is, and right on text written from the list unless some
listed word straddles two of the text's words.

    >>> from numpretrain.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.train("我昨天去了北京大学参观")
    >>> words = WordList(["昨天", "北京", "大学", "参观"], tok)
    >>> words.word_starts([tok.encode("我昨天去了北京大学参观")]).astype(int)
    array([[1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0]])

`word_starts` has the shape mlm.mask_tokens asks for (BPETokenizer.word_starts
is its counterpart for byte-level BPE).
"""

import numpy as np

from numpretrain.errors import ConfigError


class WordList:
    """Words of two or more characters, as token ids, and the segmentation they give."""

    def __init__(self, words, tokenizer, source="the word list"):
        """`words`: strings; those with a character outside the tokenizer's vocabulary can never
        match and are left out, and so are single characters (every character starts a word anyway).
        `source` names the list in an error."""
        self.words = set()
        for word in words:
            ids = tokenizer.encode(word)
            if len(ids) >= 2 and tokenizer.unk_id not in ids:
                self.words.add(tuple(ids))
        if not self.words:
            raise ConfigError(f"{source} has no word of two or more characters the tokenizer knows")
        self.longest = max(len(word) for word in self.words)

    def __len__(self):
        return len(self.words)

    def word_length_at(self, row, t):
        """Length of the longest listed word starting at row[t], or 1 when none does."""
        for length in range(min(self.longest, len(row) - t), 1, -1):
            if tuple(row[t:t + length]) in self.words:
                return length
        return 1

    def word_starts(self, ids):
        """(B, T) ids -> (B, T) bool, True where a token begins a word (forward maximum matching).

        Special tokens are in no word, so a word never spans [SEP] or [PAD].
        """
        ids = np.asarray(ids)
        starts = np.ones(ids.shape, dtype=bool)  # (B, T)
        for b, row in enumerate(ids.tolist()):
            t = 0
            while t < len(row):
                length = self.word_length_at(row, t)
                starts[b, t + 1:t + length] = False
                t += length
        return starts
