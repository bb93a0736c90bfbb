"""Classifier heads on a pretrained body, for fine-tuning.

    GPTClassifier   the GPT paper's recipe: a linear layer on the hidden state of the last
                    real token, trained with the language-modelling loss added as an
                    auxiliary objective (weight lm_weight, 0.5 by default)
    BertClassifier  dropout + linear on the pooled [CLS] output (pooling="cls", BERT's
                    recipe) or on the mean of the real tokens' states (pooling="mean")

Both take their body's config inside a ClassifierConfig, so a fine-tuned model saves
and loads like any other run directory. `load_body` copies pretrained weights in.
"""

from dataclasses import dataclass, field

import numpy as np

from .. import functional as F
from ..errors import CheckpointError, ConfigError
from ..nn import Dropout, Linear, Module, init_weights
from .bert import BertConfig, BertModel
from .gpt import GPT, GPTConfig

LM_WEIGHT = 0.5  # the GPT paper's lambda for the auxiliary language-modelling loss (section 3.2)


@dataclass
class ClassifierConfig:
    body: dict                      # the GPT or BERT config, as its to_dict()
    n_labels: int = 2
    labels: list = field(default_factory=list)   # label names, in id order
    pooling: str = "last"           # "last" (GPT), "cls" or "mean" (BERT)
    lm_weight: float = LM_WEIGHT    # GPT only: weight of the auxiliary LM loss
    dropout: float = 0.1            # before the classifier layer

    def __post_init__(self):
        if self.n_labels < 2:
            raise ConfigError(f"a classifier needs at least 2 labels, got {self.n_labels}")
        kind = self.body.get("model_type")
        allowed = {"gpt": ("last",), "bert": ("cls", "mean")}.get(kind)
        if allowed is None:
            raise ConfigError(f"a classifier body must be a gpt or bert config, got model_type={kind!r}")
        if self.pooling not in allowed:
            raise ConfigError(f"pooling {self.pooling!r} does not fit a {kind} body (use {' or '.join(allowed)})")

    @property
    def body_config(self):
        return (GPTConfig if self.body["model_type"] == "gpt" else BertConfig).from_dict(self.body)

    @property
    def vocab_size(self):
        return self.body["vocab_size"]

    def to_dict(self):
        return {"model_type": f"{self.body['model_type']}_classifier", "body": self.body,
                "n_labels": self.n_labels, "labels": list(self.labels), "pooling": self.pooling,
                "lm_weight": self.lm_weight, "dropout": self.dropout}

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
    body.load_state_dict({k: weights[k] for k in wanted})


class GPTClassifier(Module):
    def __init__(self, config, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.config = config
        self.gpt = GPT(config.body_config, rng=rng)
        self.dropout = Dropout(config.dropout)
        self.classifier = Linear(config.body_config.n_embd, config.n_labels)
        init_weights(self.classifier, rng=rng)

    def forward(self, batch):
        """batch: input_ids (B, T), last_index (B,), optional labels (B,) -> dict of logits, loss, accuracy."""
        ids = batch["input_ids"]
        B = len(ids)
        # Right padding needs no mask: causal attention never looks ahead to the padding.
        hidden = self.gpt.hidden_states(ids)                               # (B, T, C)
        last = hidden[np.arange(B), batch["last_index"]]                    # (B, C)
        logits = self.classifier(self.dropout(last))                        # (B, n_labels)
        out = {"logits": logits}
        if "labels" in batch:
            out["cls_loss"] = F.cross_entropy(logits, batch["labels"])
            out["loss"] = out["cls_loss"]
            if self.config.lm_weight:
                # auxiliary LM loss over the real tokens: predict token t+1 from t, padding ignored
                lm_logits = hidden[:, :-1] @ self.gpt.output_embedding.T     # (B, T-1, V)
                targets = np.where(batch["attention_mask"][:, 1:], ids[:, 1:], F.IGNORE_INDEX)
                out["lm_loss"] = F.cross_entropy(lm_logits, targets)
                out["loss"] = out["cls_loss"] + self.config.lm_weight * out["lm_loss"]
            out["accuracy"] = float((logits.data.argmax(-1) == batch["labels"]).mean())
        return out

    @property
    def body(self):
        return self.gpt


class BertClassifier(Module):
    def __init__(self, config, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.config = config
        self.bert = BertModel(config.body_config, rng=rng)
        self.dropout = Dropout(config.dropout)
        self.classifier = Linear(config.body_config.n_embd, config.n_labels)
        init_weights(self.classifier, rng=rng)

    def forward(self, batch):
        """batch: input_ids, token_type_ids, attention_mask (B, T), optional labels (B,)."""
        mask = batch["attention_mask"]
        hidden, pooled = self.bert(batch["input_ids"], batch.get("token_type_ids"), mask)   # (B, T, C), (B, C)
        if self.config.pooling == "mean":
            weights = (mask / mask.sum(axis=1, keepdims=True)).astype(hidden.dtype)        # (B, T)
            pooled = (hidden * weights[:, :, None]).sum(axis=1)                             # (B, C)
        logits = self.classifier(self.dropout(pooled))                                      # (B, n_labels)
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = F.cross_entropy(logits, batch["labels"])
            out["accuracy"] = float((logits.data.argmax(-1) == batch["labels"]).mean())
        return out

    @property
    def body(self):
        return self.bert
