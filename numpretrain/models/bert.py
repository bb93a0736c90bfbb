"""BERT: a bidirectional encoder pretrained by masked language modelling and next sentence prediction.

    BertModel           token + position + segment embeddings -> LayerNorm -> dropout
                        -> post-LN blocks with a key-padding mask -> pooler (dense + tanh at [CLS])
    BertForPreTraining  + MLM head (dense + GELU + LayerNorm, decoder tied to the token
                        embedding, plus an output bias) and NSP head (2-way linear on the pooled output)

The architecture follows the original BERT (post-LN, exact erf GELU, LayerNorm eps 1e-12),
so Hugging Face BERT weights map onto it name by name; the table is in numpretrain/storage/hf.py
and docs/weights.md.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from numpretrain.autograd import functional as F
from numpretrain.errors import ConfigError, check_ids_in_range
from numpretrain.models.config import ModelConfig
from numpretrain.nn import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
    TransformerBlock,
    init_weights,
)

NSP_IS_NEXT, NSP_NOT_NEXT = 0, 1   # Hugging Face's labels: 0 = "B follows A", 1 = "B is random"


@dataclass
class BertConfig(ModelConfig):
    model_type = "bert"           # in config.json; not a dataclass field (no annotation)
    size_fields = ("vocab_size", "max_position", "type_vocab_size", "n_layer", "n_head", "n_embd",
                   "intermediate_size")

    vocab_size: int = 512
    max_position: int = 128       # longest input, [CLS] and [SEP]s included
    type_vocab_size: int = 2      # segments A and B
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    intermediate_size: int = 512  # the feed-forward width (4 x n_embd in BERT)
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: Optional[int] = 0   # [PAD]'s id: its embedding row starts at 0 and gets no gradient,
                                      # as Hugging Face's BERT (padding_idx); None: no padding row

    def __post_init__(self):
        super().__post_init__()
        if self.pad_token_id is not None and not (isinstance(self.pad_token_id, int)
                                                  and 0 <= self.pad_token_id < self.vocab_size):
            raise ConfigError(f"BertConfig.pad_token_id must be None or an id in [0, {self.vocab_size}), "
                              f"got {self.pad_token_id!r}")


class BertEmbeddings(Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.word_embeddings = Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position, C)
        self.token_type_embeddings = Embedding(config.type_vocab_size, C)
        self.LayerNorm = LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)

    def forward(self, ids, token_type_ids):
        T = ids.shape[1]
        x = self.word_embeddings(ids) + self.token_type_embeddings(token_type_ids)   # (B, T, C)
        x = x + self.position_embeddings(np.arange(T))                              # (B, T, C)
        return self.dropout(self.LayerNorm(x))                                      # (B, T, C)


class BertModel(Module):
    def __init__(self, config, rng=None):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layer = ModuleList([
            TransformerBlock(config.n_embd, config.n_head, dropout=config.dropout, norm_first=False,
                             causal=False, layer_norm_eps=config.layer_norm_eps, approximate="none",
                             mlp_hidden=config.intermediate_size)
            for _ in range(config.n_layer)])
        self.pooler = Linear(config.n_embd, config.n_embd)
        init_weights(self, rng=rng if rng is not None else np.random.default_rng(0))

    def check_inputs(self, ids, token_type_ids, attention_mask):
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"BERT expects token ids as an integer array of shape (B, T), got "
                             f"shape {ids.shape} and dtype {ids.dtype}")
        c = self.config
        if ids.shape[1] > c.max_position:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_position={c.max_position}")
        check_ids_in_range(ids, c.vocab_size, where="BERT")
        token_type_ids = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        if token_type_ids.shape != ids.shape or (token_type_ids.size and (
                token_type_ids.min() < 0 or token_type_ids.max() >= c.type_vocab_size)):
            raise ValueError(f"token_type_ids must have shape {ids.shape} with values below {c.type_vocab_size}")
        if attention_mask is not None:
            attention_mask = np.asarray(attention_mask, dtype=bool)
            if attention_mask.shape != ids.shape:
                raise ValueError(f"attention_mask must have shape {ids.shape}, got {attention_mask.shape}")
        return ids, token_type_ids, attention_mask

    def forward(self, ids, token_type_ids=None, attention_mask=None):
        """ids (B, T) -> (sequence output (B, T, C), pooled [CLS] output (B, C)).

        attention_mask: (B, T) bool, True at real tokens; padded keys are never attended to.
        """
        ids, token_type_ids, attention_mask = self.check_inputs(ids, token_type_ids, attention_mask)
        x = self.embeddings(ids, token_type_ids)                          # (B, T, C)
        for block in self.layer:
            x = block(x, key_padding_mask=attention_mask)                 # (B, T, C)
        pooled = self.pooler(x[:, 0]).tanh()                              # (B, C)
        return x, pooled


def add_mlm_head(model, config, rng):
    """The MLM head's parameters on `model` (BertForPreTraining, or a cloze classifier that reuses them):
    a transform (dense + GELU + LayerNorm), then the token embedding matrix (tied) and a bias decode it."""
    C = config.n_embd
    model.mlm_dense = Linear(C, C)
    model.mlm_LayerNorm = LayerNorm(C, eps=config.layer_norm_eps)
    model.mlm_bias = Parameter(np.zeros(config.vocab_size, dtype=np.float32))
    init_weights(model.mlm_dense, rng=rng)


class BertForPreTraining(Module):
    def __init__(self, config, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.config = config
        self.bert = BertModel(config, rng=rng)
        add_mlm_head(self, config, rng)
        self.nsp = Linear(config.n_embd, 2)
        init_weights(self.nsp, rng=rng)

    def mlm_logits(self, hidden):
        """Hidden states (..., C) -> vocabulary logits (..., V)."""
        h = F.gelu(self.mlm_dense(hidden), approximate="none")           # (..., C)
        h = self.mlm_LayerNorm(h)                                         # (..., C)
        return h @ self.bert.embeddings.word_embeddings.weight.T + self.mlm_bias   # (..., V)

    def forward(self, ids, token_type_ids=None, attention_mask=None, mlm_labels=None, nsp_labels=None):
        """Returns a dict with mlm_logits (at labelled positions when labels are given, else everywhere),
        nsp_logits (B, 2) and, given labels, the loss (MLM + NSP cross-entropy) and both accuracies."""
        hidden, pooled = self.bert(ids, token_type_ids, attention_mask)  # (B, T, C), (B, C)
        out = {"nsp_logits": self.nsp(pooled)}                            # (B, 2)
        if mlm_labels is None:
            out["mlm_logits"] = self.mlm_logits(hidden)                   # (B, T, V)
            return out
        mlm_labels = np.asarray(mlm_labels)
        # Only the chosen positions carry a label, so only they go through the vocabulary projection.
        rows, cols = np.nonzero(mlm_labels != F.IGNORE_INDEX)            # M chosen positions
        targets = mlm_labels[rows, cols]                                  # (M,)
        logits = self.mlm_logits(hidden[rows, cols])                      # (M, V)
        out["mlm_logits"] = logits
        loss = F.cross_entropy(logits, targets)
        out["mlm_loss"] = loss
        out["mlm_accuracy"] = float((logits.data.argmax(-1) == targets).mean()) if len(targets) else 0.0
        if nsp_labels is not None:
            nsp_labels = np.asarray(nsp_labels)
            nsp_loss = F.cross_entropy(out["nsp_logits"], nsp_labels)
            out["nsp_loss"] = nsp_loss
            out["nsp_accuracy"] = float((out["nsp_logits"].data.argmax(-1) == nsp_labels).mean())
            loss = loss + nsp_loss
        out["loss"] = loss
        return out
