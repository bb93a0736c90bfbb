"""The yardsticks a model must beat, fitted in a few lines of NumPy with no pretraining.

- `unigram_loss`, `bigram_loss`: add-alpha n-gram models of the training tokens, scored by
  their cross-entropy (nats per token) on the validation tokens, the same measure as a
  language model's validation loss.
- `BagOfCharacters`: multinomial naive Bayes over character counts. It shows what the
  labelled reviews give away without any pretraining. On the control split (new reviews
  with the labelled adjectives) it should be nearly perfect, proving the task is learnable
  from the labels; on the held-out split it should be at chance, proving the split leaks
  nothing: every character it could use is either unseen in training or label-independent.
  Deterministic: no randomness at all.
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


class BagOfCharacters:
    """Multinomial naive Bayes on character counts, with add-`smoothing` (Laplace) counts.

    Characters not seen in training are ignored at prediction, as they carry
    no evidence either way.
    """

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing
        self.vocabulary = {}     # character -> column
        self.log_prior = None    # (n_classes,)
        self.log_likelihood = None  # (n_classes, V) log P(character | class)

    def counts(self, texts) -> np.ndarray:
        """Character counts over the training vocabulary, (n_texts, V)."""
        counts = np.zeros((len(texts), len(self.vocabulary)))
        for row, text in enumerate(texts):
            for character in text:
                column = self.vocabulary.get(character)
                if column is not None:
                    counts[row, column] += 1
        return counts

    def fit(self, texts, labels) -> "BagOfCharacters":
        labels = np.asarray(labels)
        if len(texts) != len(labels) or len(texts) == 0:
            raise ValueError(f"need as many labels as texts, and at least one: "
                             f"{len(texts)} texts, {len(labels)} labels")
        self.vocabulary = {c: i for i, c in enumerate(sorted(set("".join(texts))))}
        counts = self.counts(texts)                                            # (N, V)
        n_classes = int(labels.max()) + 1
        one_hot = labels[:, None] == np.arange(n_classes)[None, :]             # (N, n_classes)
        class_counts = one_hot.T.astype(float) @ counts + self.smoothing       # (n_classes, V)
        self.log_likelihood = np.log(class_counts / class_counts.sum(axis=1, keepdims=True))
        self.log_prior = np.log(one_hot.mean(axis=0))
        return self

    def predict(self, texts) -> np.ndarray:
        if self.log_likelihood is None:
            raise RuntimeError("BagOfCharacters.predict called before fit")
        scores = self.counts(texts) @ self.log_likelihood.T + self.log_prior  # (N, n_classes)
        return scores.argmax(axis=1)

    def accuracy(self, texts, labels) -> float:
        return float(np.mean(self.predict(texts) == np.asarray(labels)))
