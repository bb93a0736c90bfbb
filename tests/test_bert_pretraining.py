"""A short BERT pretraining on the built-in corpus learns both tasks: accuracy well above chance.

Chance for MLM is not 1/V: predicting the most frequent character everywhere does better, so
the bar is set against that baseline measured on the same masked positions.
"""

import numpy as np

from numpretrain.app import cli
from numpretrain.autograd.tensor import no_grad
from numpretrain.data import IGNORE_INDEX, PretrainingBatcher, corpus_text, generate_documents, split_documents
from numpretrain.storage.runs import load_pretrained


def accuracies(model, batches):
    """MLM accuracy over every masked position and NSP accuracy over every pair, from the
    model's own logits (the MLM logits come back only at the labelled positions)."""
    mlm_hits, nsp_hits = [], []
    with no_grad():
        for b in batches:
            out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], b["mlm_labels"])
            targets = b["mlm_labels"][b["mlm_labels"] != IGNORE_INDEX]                # (M,) row-major
            mlm_hits.append(out["mlm_logits"].data.argmax(-1) == targets)             # (M,)
            nsp_hits.append(out["nsp_logits"].data.argmax(-1) == b["nsp_labels"])     # (B,)
    return np.concatenate(mlm_hits).mean(), np.concatenate(nsp_hits).mean()


def test_short_pretraining_learns_mlm_and_nsp(tmp_path):
    out = str(tmp_path / "bert")
    assert cli.main(["pretrain-bert", "--out", out, "--n-documents", "3000", "--n-layer", "2", "--n-head", "2",
                     "--n-embd", "64", "--block-size", "32", "--batch-size", "32", "--max-iters", "300",
                     "--lr", "2e-3", "--warmup-iters", "20", "--eval-interval", "300", "--eval-iters", "2",
                     "--log-interval", "100", "--dropout", "0"]) == 0
    model, tokenizer, _ = load_pretrained(out, expect="bert")
    documents = split_documents(corpus_text(generate_documents(3000, seed=0)))
    batcher = PretrainingBatcher.from_tokenizer(documents, tokenizer, max_seq_length=32)
    batches = batcher.fixed_validation_batches(8, 32, seed=123)            # 256 held-out pairs
    mlm_accuracy, nsp_accuracy = accuracies(model, batches)

    labels = np.concatenate([b["mlm_labels"][b["mlm_labels"] != IGNORE_INDEX] for b in batches])
    most_frequent_share = np.bincount(labels).max() / len(labels)
    print(f"MLM accuracy {mlm_accuracy:.3f} (most frequent character: {most_frequent_share:.3f}), "
          f"NSP accuracy {nsp_accuracy:.3f} (chance 0.5)")
    assert mlm_accuracy > 1.5 * most_frequent_share
    assert nsp_accuracy > 0.6
