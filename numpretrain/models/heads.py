"""Classifier heads on a pretrained body, for fine-tuning.

    GPTClassifier   the GPT paper's recipe: a linear layer on the hidden state of the last
                    real token, trained with the language-modelling loss added as an
                    auxiliary objective (weight lm_weight, 0.5 by default)
    BertClassifier  dropout + linear on the pooled [CLS] output (pooling="cls", BERT's
                    recipe) or on the mean of the real tokens' states (pooling="mean"); or no
                    new layer at all (pooling="cloze"): the pretraining MLM head scores one word
                    per label at [MASK]s written after the text, as PET (Schick and Schuetze,
                    2021) asks a BERT a cloze question

Both take their body's config inside a ClassifierConfig, so a fine-tuned model saves
and loads like any other run directory. `load_body` copies pretrained weights in.
`body_features(batch)` gives the (B, C) vector each head reads; a batch that carries
those vectors as "features" skips the body (a linear probe computes them once).
"""

from dataclasses import dataclass, field

import numpy as np

from numpretrain.autograd import functional as F
from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import CheckpointError, ConfigError, DataError
from numpretrain.models.bert import BertConfig, BertForPreTraining, BertModel, add_mlm_head
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.nn import Dropout, Linear, Module, init_weights

LM_WEIGHT = 0.5  # the GPT paper's lambda for the auxiliary language-modelling loss (section 3.2)


@dataclass
class ClassifierConfig:
    body: dict                      # the GPT or BERT config, as its to_dict()
    n_labels: int = 2
    labels: list = field(default_factory=list)   # label names, in id order
    pooling: str = "last"           # "last" (GPT), "cls", "mean" or "cloze" (BERT)
    lm_weight: float = LM_WEIGHT    # GPT only: weight of the auxiliary LM loss
    dropout: float = 0.1            # dropout probability on the vector the classifier layer reads
    classifier_bias: bool = True    # a bias in the classifier layer (the GPT paper's W_y and
                                    # transformers' GPT classifiers have none)
    cloze: str = ""                 # pooling "cloze": the text the model reads, "{text}" and one [MASK] per
                                    # token of a verbalizer, e.g. "{text}非常[MASK][MASK]。"
    verbalizers: list = field(default_factory=list)      # pooling "cloze": one word per label, in label order
    verbalizer_ids: list = field(default_factory=list)   # their token ids (n_labels, n_masks)
    mask_id: int = None             # pooling "cloze": the tokenizer's [MASK] id

    def __post_init__(self):
        if self.n_labels < 2:
            raise ConfigError(f"a classifier needs at least 2 labels, got {self.n_labels}")
        kind = self.body.get("model_type")
        allowed = {"gpt": ("last",), "bert": ("cls", "mean", "cloze")}.get(kind)
        if allowed is None:
            raise ConfigError(f"a classifier body must be a gpt or bert config, got model_type={kind!r}")
        if self.pooling not in allowed:
            raise ConfigError(f"pooling {self.pooling!r} does not fit a {kind} body (use {' or '.join(allowed)})")
        if not isinstance(self.classifier_bias, bool):
            raise ConfigError(f"ClassifierConfig.classifier_bias must be true or false, got {self.classifier_bias!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"ClassifierConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.lm_weight < float("inf"):      # a negative weight would reward forgetting the language
            raise ConfigError(f"ClassifierConfig.lm_weight must be a finite number >= 0, got {self.lm_weight}")
        if self.pooling == "cloze":
            self._check_cloze()

    def _check_cloze(self):
        if not isinstance(self.cloze, str) or self.cloze.count("{text}") != 1:
            raise ConfigError(f"a cloze must hold {{text}} once, where the text goes, got {self.cloze!r}")
        words, ids = self.verbalizers, self.verbalizer_ids
        if not (isinstance(words, list) and len(words) == self.n_labels and all(isinstance(w, str) for w in words)):
            raise ConfigError(f"a cloze needs one verbalizer (a word) per label, {self.n_labels} in all, got {words!r}")
        rows = isinstance(ids, list) and len(ids) == self.n_labels and all(
            isinstance(row, list) and len(row) == len(ids[0]) >= 1 for row in ids)
        if not rows or not all(isinstance(i, int) and 0 <= i < self.vocab_size for row in ids for i in row):
            raise ConfigError(f"verbalizer_ids must be {self.n_labels} rows of as many token ids below "
                              f"{self.vocab_size}, one row per verbalizer, got {str(ids)[:80]}")
        if not (isinstance(self.mask_id, int) and 0 <= self.mask_id < self.vocab_size):
            raise ConfigError(f"a cloze needs the [MASK] id, an integer below {self.vocab_size}, got {self.mask_id!r}")

    @property
    def body_config(self):
        return (GPTConfig if self.body["model_type"] == "gpt" else BertConfig).from_dict(self.body)

    @property
    def vocab_size(self):
        return self.body["vocab_size"]

    def to_dict(self):
        return {"model_type": f"{self.body['model_type']}_classifier", "body": self.body,
                "n_labels": self.n_labels, "labels": list(self.labels), "pooling": self.pooling,
                "lm_weight": self.lm_weight, "dropout": self.dropout, "classifier_bias": self.classifier_bias,
                **({"cloze": self.cloze, "verbalizers": list(self.verbalizers),
                    "verbalizer_ids": [list(row) for row in self.verbalizer_ids], "mask_id": self.mask_id}
                   if self.pooling == "cloze" else {})}

    @classmethod
    def from_dict(cls, config):
        config = dict(config)
        config.pop("model_type", None)
        return cls(**config)


def load_body(body, weights, source):
    """Copy pretrained weights into `body`, keeping only the keys it has (the pretraining heads go)."""
    wanted = dict(body.named_parameters())
    missing = [k for k in wanted if k not in weights]
    if missing:
        raise CheckpointError(f"{source}: the pretrained weights lack {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}")
    try:
        body.load_state_dict({k: weights[k] for k in wanted})
    except CheckpointError as error:         # a shape mismatch: the config and the weights disagree
        raise CheckpointError(f"{source}: the pretrained weights do not fit the model: {error}") from None


class SequenceClassifier(Module):
    """What both heads share: dropout + linear on one (B, C) vector per text, and its cross-entropy.

    forward(batch) reads the body unless the batch carries "features" (B, C): a frozen body's
    vectors, computed once by `body_features` (app/finetune.py does this for a linear probe), so
    training the head alone never runs the body again.
    """

    def _init_head(self, config, rng):
        self.config = config
        self.dropout = Dropout(config.dropout)
        self.classifier = Linear(config.body_config.n_embd, config.n_labels, bias=config.classifier_bias)
        init_weights(self.classifier, rng=rng)

    def classify(self, features, labels=None):
        """features (B, C) -> {"logits" (B, n_labels)} and, given labels (B,), cls_loss, loss, accuracy."""
        return self.scored(self.classifier(self.dropout(features)), labels)    # (B, n_labels)

    @staticmethod
    def scored(logits, labels=None):
        """{"logits" (B, n_labels)} and, given labels (B,), cls_loss, loss and accuracy."""
        out = {"logits": logits}
        if labels is not None:
            out["cls_loss"] = out["loss"] = F.cross_entropy(logits, labels)
            out["accuracy"] = float((logits.data.argmax(-1) == labels).mean())
        return out


class GPTClassifier(SequenceClassifier):
    def __init__(self, config, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.gpt = GPT(config.body_config, rng=rng)
        self._init_head(config, rng)

    def body_features(self, batch):
        """(hidden states (B, T, C), the hidden state of each row's last real token (B, C))."""
        ids = batch["input_ids"]
        # Right padding needs no mask: causal attention never looks ahead to the padding.
        hidden = self.gpt.hidden_states(ids)                               # (B, T, C)
        return hidden, hidden[np.arange(len(ids)), batch["last_index"]]     # (B, C)

    def forward(self, batch):
        """batch: input_ids (B, T), last_index (B,), attention_mask (B, T), optional labels (B,)
        -> dict of logits and, with labels, loss (= cls_loss + lm_weight * lm_loss), accuracy."""
        labels = batch.get("labels")
        if "features" in batch:                       # a frozen body: its LM loss could change nothing
            return self.classify(Tensor(batch["features"]), labels)
        hidden, last = self.body_features(batch)                            # (B, T, C), (B, C)
        out = self.classify(last, labels)
        if labels is not None and self.config.lm_weight:
            # auxiliary LM loss over the real tokens: predict token t+1 from t, padding ignored
            ids = batch["input_ids"]
            lm_logits = hidden[:, :-1] @ self.gpt.output_embedding.T         # (B, T-1, V)
            targets = np.where(batch["attention_mask"][:, 1:], ids[:, 1:], F.IGNORE_INDEX)   # (B, T-1)
            out["lm_loss"] = F.cross_entropy(lm_logits, targets)
            out["loss"] = out["cls_loss"] + self.config.lm_weight * out["lm_loss"]
        return out

    @property
    def body(self):
        return self.gpt


class BertClassifier(SequenceClassifier):
    def __init__(self, config, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.bert = BertModel(config.body_config, rng=rng)
        if config.pooling == "cloze":
            self.config = config
            add_mlm_head(self, config.body_config, rng)     # the pretraining MLM head, loaded with the body
        else:
            self._init_head(config, rng)

    mlm_logits = BertForPreTraining.mlm_logits      # the cloze reads the pretraining MLM head, names and all

    def body_features(self, batch):
        """(sequence output (B, T, C), the pooled [CLS] output or the mean of the real tokens' states (B, C))."""
        mask = batch["attention_mask"]                                                     # (B, T) bool
        hidden, pooled = self.bert(batch["input_ids"], batch.get("token_type_ids"), mask)   # (B, T, C), (B, C)
        if self.config.pooling == "mean":
            weights = (mask / mask.sum(axis=1, keepdims=True)).astype(hidden.dtype)        # (B, T), rows sum to 1
            pooled = (hidden * weights[:, :, None]).sum(axis=1)                             # (B, C)
        return hidden, pooled

    def forward(self, batch):
        """batch: input_ids, token_type_ids, attention_mask (B, T), optional labels (B,)."""
        if "features" in batch:
            return self.classify(Tensor(batch["features"]), batch.get("labels"))
        if self.config.pooling == "cloze":
            return self.scored(self.cloze_scores(batch), batch.get("labels"))
        return self.classify(self.body_features(batch)[1], batch.get("labels"))

    def cloze_scores(self, batch):
        """Each label's log P(its verbalizer at the text's [MASK]s), by the MLM head: (B, n_labels).

        The L [MASK]s of a row are predicted together, each from the text and the other [MASK]s,
        so a word scores the sum of its tokens' log-probabilities, one at each [MASK] in order.
        """
        ids = batch["input_ids"]                                                    # (B, T)
        words = np.asarray(self.config.verbalizer_ids)                              # (n_labels, L)
        B, L = len(ids), words.shape[1]
        rows, cols = np.nonzero(ids == self.config.mask_id)                         # row by row, left to right
        if not np.array_equal(np.bincount(rows, minlength=B), np.full(B, L)):
            raise DataError(f"every text of a cloze needs exactly {L} [MASK]s, as its verbalizers have tokens; "
                            f"some have {sorted(set(np.bincount(rows, minlength=B).tolist()) - {L})}")
        hidden, _ = self.bert(ids, batch.get("token_type_ids"), batch["attention_mask"])   # (B, T, C)
        logprobs = F.log_softmax(self.mlm_logits(hidden[rows, cols]))               # (B*L, V)
        logprobs = logprobs.reshape(B, L, -1)                                        # (B, L, V)
        return logprobs[:, np.arange(L), words].sum(axis=-1)                        # (B, n_labels, L) -> (B, n_labels)

    @property
    def body(self):
        return self.bert
