"""Fine-tuning: a classifier head on a pretrained GPT or BERT, trained on a small labelled set.

    model, report = finetune(options)      # what `python -m numpretrain finetune` runs

The labelled data is the built-in reviews (`--task reviews`: held-out-adjective test split,
see data/reviews.py) or a user's TSV/JSONL files. `--from-scratch` trains the same
architecture with freshly initialised weights, `--freeze` trains the head alone (a linear
probe), and the report gives accuracy, macro-F1 and the confusion matrix on the test split.
A BERT with `--pooling cloze` adds no layer: its MLM head scores a word per label
(`--verbalizers`) at the [MASK]s of a question written around the text (`--cloze`).

Two things keep it quick on a CPU: every batch is cut to its longest text (`trim`; reviews
are a few dozen characters, the context 64), and a frozen body runs once per text
(`body_features`), after which each step trains a (C, n_labels) matrix on stored vectors.
GPT reads its texts laid out as in pretraining, one sentence per line (`as_gpt_text`).

With --out the run has a folder as a pretraining run does: config.json records its settings
(app/settings.py), the Trainer checkpoints into it, and `--resume` continues it exactly. Without
--out nothing is saved.
"""

import os
from dataclasses import dataclass

import numpy as np

from numpretrain.app.footprint import check_fits, finetune_needs, review_needs
from numpretrain.app.pretrain import train_config
from numpretrain.app.settings import open_run, record_run
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import no_grad
from numpretrain.data import LabelVocabulary, encode_cloze, encode_for_bert, encode_for_gpt, load_labelled_file
from numpretrain.data.builtin.reviews import LABEL_NAMES, REVIEW_CLOZE, REVIEW_VERBALIZERS, review_dataset
from numpretrain.data.text_files import split_sentences
from numpretrain.errors import CheckpointError, ConfigError, DataError
from numpretrain.models.heads import BertClassifier, ClassifierConfig, GPTClassifier, load_body
from numpretrain.storage.formats import load_safetensors
from numpretrain.storage.runs import MODEL_FILE, load_pretrained
from numpretrain.training.data_parallel import check_batch_split
from numpretrain.training.trainer import Trainer


@dataclass
class Report:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray      # (n_labels, n_labels): rows are true labels, columns predictions
    labels: list

    def __str__(self):
        width = max(len(label) for label in self.labels) + 2
        lines = [f"accuracy {self.accuracy:.4f}   macro-F1 {self.macro_f1:.4f}",
                 "confusion matrix (rows: true, columns: predicted)",
                 " " * width + "".join(f"{label:>{width}}" for label in self.labels)]
        for label, row in zip(self.labels, self.confusion):
            lines.append(f"{label:>{width}}" + "".join(f"{n:>{width}}" for n in row))
        return "\n".join(lines)


def evaluate(true, predicted, labels):
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    tp = np.diag(confusion).astype(float)
    precision = tp / np.maximum(confusion.sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    return Report(float((true == predicted).mean()), float(f1.mean()), confusion, list(labels))


def labelled_data(options):
    """(train, test, extra eval sets, label names) as lists of (text, label id)."""
    if options.task == "reviews":
        data = review_dataset(seed=options.data_seed, n_train=max(options.labels or 256, 256))
        return data.train, data.test, {"control": data.control}, list(LABEL_NAMES)
    if not (options.train and options.test):
        raise DataError("give --task reviews, or both --train FILE and --test FILE")
    train = load_labelled_file(options.train)
    vocabulary = LabelVocabulary.from_examples(train)
    test = load_labelled_file(options.test, labels=vocabulary.labels)
    as_ids = lambda examples: list(zip([t for t, _ in examples], vocabulary.encode([l for _, l in examples])))
    return as_ids(train), as_ids(test), {}, vocabulary.labels


def as_gpt_text(text):
    """A text laid out as GPT's pretraining text: one sentence per line, each line ending in "\n".

    The built-in corpus (and the format asked of a user's corpus) puts every sentence on a
    line of its own, so after a review's last sentence the GPT has always seen "\n" and then
    the closing (我还会再来 / 再也不来了). The classifier reads the last token's state, so ending
    the text the same way makes that state the model's guess at the closing, which is exactly
    what pretraining taught it about each adjective. Measured on the held-out-adjective reviews
    with 16 labels: a linear probe on the demo GPT (0.34 nats/char) reads 100% with this layout
    and 66% with the sentences run together (3 seeds); end-to-end fine-tuning makes up for it on
    that GPT (95% and 96%) but not on a less trained one (0.52 nats/char: 86% against 54%, one seed).
    BERT saw no line breaks (its batches join a document's sentences directly), so its texts stay as they are.
    """
    if isinstance(text, tuple):
        return tuple(as_gpt_text(part) for part in text)
    return "".join(sentence + "\n" for sentence in split_sentences(text)) or text


def encode(model, tokenizer, texts, max_length, labels=None):
    """Texts (or (a, b) pairs) -> the arrays the model's classifier reads (see data/classify.py)."""
    if isinstance(model, GPTClassifier):
        return encode_for_gpt([as_gpt_text(text) for text in texts], tokenizer, max_length, labels)
    if model.config.pooling == "cloze":
        return encode_cloze(list(texts), model.config.cloze, tokenizer, max_length, labels)
    return encode_for_bert(list(texts), tokenizer, max_length, labels)


def encode_examples(model, tokenizer, examples, max_length):
    """[(text, label id)] -> encoded arrays with labels (N,)."""
    return encode(model, tokenizer, [text for text, _ in examples], max_length,
                  np.asarray([label for _, label in examples], dtype=np.int64))


SEQUENCE_KEYS = ("input_ids", "token_type_ids", "attention_mask")   # the (B, T) arrays of an encoded set


def trim(batch):
    """Drop the padding columns no row of the batch needs: (B, T) -> (B, T'), T' its longest text.

    Reviews are a few dozen characters, so a batch padded to the model's context would spend
    most of its time on [PAD]. Causal attention (GPT) never looks ahead, and BERT masks padded
    keys, so the real tokens' states are the same with or without the cut.
    """
    if "attention_mask" not in batch:
        return batch
    T = int(batch["attention_mask"].sum(axis=1).max())
    return {key: value[:, :T] if key in SEQUENCE_KEYS else value for key, value in batch.items()}


def by_length(data, batch_size):
    """(row indices, batch) pairs covering an encoded set once, shortest texts first.

    Batching texts of similar length lets `trim` cut most of the padding; precomputed
    features have no length and come in order.
    """
    n = len(next(iter(data.values())))
    order = np.argsort(data["attention_mask"].sum(axis=1), kind="stable") if "attention_mask" in data \
        else np.arange(n)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        yield rows, trim({key: value[rows] for key, value in data.items() if key != "labels"})


def predict_logits(model, data, batch_size=128):
    """Classifier logits (N, n_labels) for an encoded set, in eval mode, without a graph."""
    model.eval()
    logits = np.zeros((len(next(iter(data.values()))), model.config.n_labels), dtype=np.float32)
    with no_grad():
        for rows, batch in by_length(data, batch_size):
            logits[rows] = model(batch)["logits"].data
    return logits


def predict(model, data, batch_size=128):
    """Predicted label ids (N,) for an encoded set."""
    return predict_logits(model, data, batch_size).argmax(-1)


def body_features(model, data, batch_size=128):
    """An encoded set -> {"features" (N, C), "labels" (N,)}: the frozen body run once per text.

    A linear probe then trains on these vectors alone (the head's forward takes "features"
    instead of token ids), so each step costs a (B, C) x (C, n_labels) product, not a Transformer.
    """
    model.eval()
    features = np.zeros((len(data["input_ids"]), model.body.config.n_embd), dtype=np.float32)
    with no_grad():
        for rows, batch in by_length(data, batch_size):
            features[rows] = model.body_features(batch)[1].data                 # (b, C)
    return {"features": features, **({"labels": data["labels"]} if "labels" in data else {})}


def cloze_fields(tokenizer, cloze, verbalizers, n_labels):
    """ClassifierConfig's cloze fields: the question, its words and their token ids, checked to fit."""
    if not cloze or not verbalizers:
        raise ConfigError("--pooling cloze needs --cloze (a question around {text} with [MASK]s) and "
                          "--verbalizers (a word per label, comma-separated)")
    if len(verbalizers) != n_labels:
        raise ConfigError(f"--verbalizers gives {len(verbalizers)} words for {n_labels} labels")
    if cloze.count("{text}") != 1:
        raise ConfigError(f"--cloze must hold {{text}} once, where the text goes, got {cloze!r}")
    ids = [tokenizer.encode(word) for word in verbalizers]
    masks = tokenizer.encode(cloze.replace("{text}", "")).count(tokenizer.mask_id)
    if any(len(word_ids) != masks for word_ids in ids) or tokenizer.unk_id in sum(ids, []):
        raise ConfigError(f"--cloze {cloze!r} has {masks} [MASK]s, so each verbalizer must be {masks} tokens the "
                          f"model knows; {', '.join(f'{w} is {len(i)}' for w, i in zip(verbalizers, ids))}"
                          + (" (with [UNK])" if tokenizer.unk_id in sum(ids, []) else ""))
    return dict(cloze=cloze, verbalizers=list(verbalizers), verbalizer_ids=ids, mask_id=tokenizer.mask_id)


def build_classifier(ckpt, n_labels, labels, from_scratch=False, pooling=None, lm_weight=0.5, dropout=0.1, seed=0,
                     classifier_bias=True, cloze=None, verbalizers=None):
    """A classifier whose body is the pretrained model in ckpt (or, from scratch, the same architecture)."""
    body, tokenizer, body_config = load_pretrained(ckpt, expect=("gpt", "bert"))
    kind = body_config.to_dict()["model_type"]
    pooling = pooling or ("last" if kind == "gpt" else "cls")
    cloze = cloze_fields(tokenizer, cloze, verbalizers, n_labels) if pooling == "cloze" else {}
    config = ClassifierConfig(body=body_config.to_dict(), n_labels=n_labels, labels=labels, pooling=pooling,
                              lm_weight=lm_weight if kind == "gpt" else 0.0, dropout=dropout,
                              classifier_bias=classifier_bias, **cloze)
    model = (GPTClassifier if kind == "gpt" else BertClassifier)(config, rng=np.random.default_rng(seed))
    if not from_scratch:
        weights = load_safetensors(os.path.join(ckpt, MODEL_FILE))
        if cloze:                  # the body and the MLM head, as pretrained (the NSP head stays behind)
            load_body(model, weights, os.path.join(ckpt, MODEL_FILE))
            return model, tokenizer
        if kind == "bert":
            weights = {k[len("bert."):]: v for k, v in weights.items() if k.startswith("bert.")}
        load_body(model.body, weights, os.path.join(ckpt, MODEL_FILE))
    return model, tokenizer


def finetune(options, log=print):
    """Fine-tune (or train from scratch) and evaluate; returns (model, {split: Report}).

    A run with --out checkpoints into it every --log-interval steps: fine-tuning has no
    validation loss to evaluate on the way (the test split is evaluated once, at the end), so
    its evaluations are checkpoints only, and they come where it logs.
    """
    for name in ("labels", "block_size"):       # None means "all examples" / "the model's context"
        value = getattr(options, name)
        if value is not None and value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    resumed = open_run(options, ("gpt_classifier", "bert_classifier"), log)   # --resume: the run's settings
    config = train_config(options, log, eval_interval=options.log_interval)
    check_fits(review_needs(options))           # --labels of the built-in reviews: before they are generated
    train, test, extra, labels = labelled_data(options)
    if options.labels:
        train = train[:options.labels]
    cloze, verbalizers = options.cloze, options.verbalizers
    if (cloze or verbalizers) and options.pooling != "cloze":
        raise ConfigError("--cloze and --verbalizers are for --pooling cloze")
    if options.pooling == "cloze":
        if options.freeze:
            raise ConfigError("--freeze trains the classifier layer alone, and --pooling cloze has none "
                              "(its MLM head is part of the body)")
        if options.task == "reviews":               # the built-in question, where none is given
            cloze, verbalizers = cloze or REVIEW_CLOZE, verbalizers or list(REVIEW_VERBALIZERS)
    model, tokenizer = build_classifier(options.ckpt, len(labels), labels, options.from_scratch,
                                        options.pooling, options.lm_weight, options.dropout, options.seed,
                                        not getattr(options, "no_classifier_bias", False), cloze, verbalizers)
    if resumed and model.config.to_dict() != resumed.model_config.to_dict():
        raise CheckpointError(f"{options.out}: its model is not the one --ckpt {options.ckpt} and the labelled "
                              f"data make now (have they changed since the run started?)")
    body_config = model.body.config
    context = body_config.block_size if isinstance(model, GPTClassifier) else body_config.max_position
    max_length = min(options.block_size or context, context)
    check_fits(finetune_needs(model, options.ckpt, len(train), min(options.batch_size, len(train)), max_length))
    train_data = encode_examples(model, tokenizer, train, max_length)
    trainable = [p for name, p in model.named_parameters() if not options.freeze or name.startswith("classifier.")]
    if options.freeze:
        for p in model.body.parameters():
            p.requires_grad = False          # no gradient flows into the frozen body at all
    n = len(train)
    batch_size = min(options.batch_size, n)
    check_batch_split(batch_size, config.grad_accum)      # fewer examples than --batch-size: all of them

    def get_batch(rng):
        rows = rng.choice(n, size=batch_size, replace=False)
        return trim({key: value[rows] for key, value in train_data.items()})

    def loss_fn(m, batch):
        out = m(batch)
        return out["loss"], {"acc": out["accuracy"]}

    if options.out:
        record_run(options, resumed, model.config, config, tokenizer)
    log(f"fine-tuning a {'fresh' if options.from_scratch else 'pretrained'} "
        f"{type(model).__name__} on {n} labelled examples ({'head only' if options.freeze else 'end to end'})")
    trainer = Trainer(model, config, get_batch, loss_fn, run_dir=options.out, log=log, parameters=trainable,
                      tokens_per_batch=batch_size * max_length)
    if resumed:
        trainer.resume()
    if options.freeze:   # the body runs once, not at every step: on the weights the run resumed with
        train_data = body_features(model, train_data)       # (get_batch reads train_data when called)
    trainer.train()
    reports = {}
    for split, examples in {"test": test, **extra}.items():
        data = encode_examples(model, tokenizer, examples, max_length)
        if options.freeze:
            data = body_features(model, data)
        reports[split] = evaluate(data["labels"], predict(model, data), labels)
    return model, reports


def classify_texts(ckpt, texts):
    """[(text, label, {label: probability})] from a fine-tuned classifier directory."""
    model, tokenizer, config = load_pretrained(ckpt, expect=("gpt_classifier", "bert_classifier"))
    body = config.body_config
    max_length = body.block_size if config.body["model_type"] == "gpt" else body.max_position
    logits = predict_logits(model, encode(model, tokenizer, texts, max_length))      # (N, n_labels)
    probs, _ = stable_softmax(logits)                                               # (N, n_labels)
    names = config.labels or [str(i) for i in range(config.n_labels)]
    return [(text, names[int(p.argmax())], dict(zip(names, map(float, p)))) for text, p in zip(texts, probs)]
