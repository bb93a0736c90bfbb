"""Pretraining runs: text -> tokenizer -> batches -> model -> Trainer, for GPT and for BERT.

`python -m numpretrain pretrain-gpt` and `pretrain-bert` call these, and so do the demos.
Options arrive as an argparse Namespace whose names are the config dataclasses' fields
(cli.py builds one option per field): CorpusConfig and MaskingConfig below, GPTConfig's
sizes, and TrainConfig, which `train_config` reads back from the options in one call.

A run checks everything it can before it writes anything: a bad option, a corpus too short
for the context or a model that cannot be built leaves no half-made --out folder behind.
Its folder records every setting, and `--resume` takes them back from there (app/settings.py).
"""

import os
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from numpretrain.app.footprint import check_fits, pretrain_needs
from numpretrain.app.settings import naming_the_record, open_run, record_run
from numpretrain.data import (
    MASK_PROB,
    MAX_PREDICTIONS_PER_SEQ,
    CausalLMDataset,
    PretrainingBatcher,
    read_text_file,
    split_documents,
)
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.words import builtin_words, entity_words
from numpretrain.errors import ConfigError
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.runs import TOKENIZER_FILE
from numpretrain.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from numpretrain.tokenizers.word_list import WordList
from numpretrain.training.data_parallel import check_batch_split
from numpretrain.training.trainer import TrainConfig, Trainer


@dataclass
class CorpusConfig:
    # The text a run trains on and its tokenizer; each field is an option (its comment, the --help).
    corpus: Optional[str] = None  # a UTF-8 text file to train on (documents separated by blank lines);
                                  # default: the built-in corpus
    n_documents: int = 40_000     # documents of the built-in corpus to generate
    corpus_seed: int = 0          # seed of the built-in corpus
    review_share: float = 0.5     # share of reviews among the built-in corpus's documents
    tokenizer: str = "char"       # character level or byte-level BPE
    vocab_size: int = 512         # BPE vocabulary size


@dataclass
class MaskingConfig:
    # BERT's pretraining tasks (pretrain-bert's options); the defaults are BERT's, see data/mlm.py.
    mask_prob: float = MASK_PROB                    # share of tokens chosen for MLM
    max_predictions: int = MAX_PREDICTIONS_PER_SEQ  # at most this many chosen tokens per sequence
    no_nsp: bool = False                            # masked language modelling only, single segments
    words: str = "none"                             # whole-word masking's words: "builtin" (the built-in
                                                    # corpus's), "entities" (only the names of its world:
                                                    # entity masking), a word list file (one word per
                                                    # line), or "none" (characters one by one)


def config_from_options(config_class, options, **values):
    """A config dataclass from parsed options: each field taken from the option of the same name.

    `values` set fields the caller decides itself; a field with neither keeps its default.
    """
    chosen = {f.name: getattr(options, f.name) for f in fields(config_class) if hasattr(options, f.name)}
    return config_class(**{**chosen, **values})


def fit_warmup(options, log=print):
    """The run's warm-up: a default longer than --max-iters shortened to it; one the user typed, checked.

    The default warm-up (100 steps) suits the default 1000-step run, but a short trial run
    (`--max-iters 80`) never asked for it, so a default longer than the run is clamped to the
    run: the warm-up lasts as long as the run allows. Clamped, not scaled to a share of the
    run, because warm-up is there while AdamW's moment estimates settle, which takes a number
    of steps, not a share of the run (and fine-tuning has always clamped). A warm-up the user
    typed is theirs: longer than the run, it is an error naming both options.
    """
    warmup, run = options.warmup_iters, options.max_iters
    if warmup <= run or run < 1:             # a run of no steps is TrainConfig's to refuse
        return warmup
    given = getattr(options, "given", None)  # the options typed on the command line (cli.py)
    if given is None or "warmup_iters" in given:     # a Namespace not made by the parser: taken as chosen
        raise ConfigError(f"--warmup-iters {warmup} is more than --max-iters {run}")
    log(f"note: --warmup-iters shortened from the default {warmup} to {run} to fit --max-iters {run}")
    return run


def fit_min_lr(options, log=print):
    """The run's final learning rate: a default above --lr lowered to a tenth of it; one typed, checked.

    `finetune --lr 1e-5` leaves --min-lr at its default 3e-5, and a cosine "decay" from 1e-5 up to
    3e-5 is not what anyone asked for; a tenth of the peak is the ratio every command's defaults keep.
    """
    if options.min_lr <= options.lr:
        return options.min_lr
    given = getattr(options, "given", None)
    if given is None or "min_lr" in given:
        raise ConfigError(f"--min-lr {options.min_lr:g} is above --lr {options.lr:g}: the cosine decay would rise")
    log(f"note: --min-lr lowered from the default {options.min_lr:g} to {options.lr / 10:g}, a tenth of --lr "
        f"{options.lr:g}")
    return options.lr / 10


def train_config(options, log=print, **values):
    """The run's TrainConfig, read from its options, with the warm-up fitted to the run and the final
    learning rate to the peak; under mpiexec, its batch checked to split evenly over the ranks."""
    fitted = {"warmup_iters": fit_warmup(options, log), "min_lr": fit_min_lr(options, log)}
    config = config_from_options(TrainConfig, options, **{**fitted, **values})
    check_batch_split(config.batch_size, config.grad_accum)
    return config


def load_corpus(options):
    """(text, source name): the user's file, or the built-in corpus generated from a seed."""
    if options.corpus:
        return read_text_file(options.corpus), options.corpus
    documents = generate_documents(options.n_documents, seed=options.corpus_seed,
                                   review_share=options.review_share)
    return corpus_text(documents), f"built-in corpus ({options.n_documents} documents, seed {options.corpus_seed})"


def tokenizer_for_run(options, text):
    """A new run's tokenizer, trained on its text; a resumed run's, read back from its folder."""
    if options.resume:
        return load_tokenizer(os.path.join(options.out, TOKENIZER_FILE))
    if getattr(options, "tokenizer", "char") == "bpe":
        return BPETokenizer.train(text, vocab_size=options.vocab_size)
    return CharTokenizer.train(text)


def word_starts_for_run(options, tokenizer):
    """Whole-word masking's word boundaries (a WordList's word_starts), or None: tokens one by one.

    A word list cuts characters into words, so it needs the character tokenizer.
    """
    if options.words == "none":
        return None
    if not isinstance(tokenizer, CharTokenizer):
        raise ConfigError(f"--words {options.words}: a word list cuts characters into words, and "
                          f"--tokenizer {options.tokenizer} does not make characters; use --words none")
    if options.words == "builtin":
        return WordList(builtin_words(), tokenizer, "the built-in word list").word_starts
    if options.words == "entities":
        return WordList(entity_words(), tokenizer, "the built-in names").word_starts
    return WordList(read_text_file(options.words).split(), tokenizer, options.words).word_starts


def pretrain_gpt(options, log=print):
    """Train a GPT on the corpus (or continue the run in --out); returns the Trainer."""
    resumed = open_run(options, ("gpt",), log)   # --resume: the run's settings become the options here
    with naming_the_record(resumed, options.out):
        train = train_config(options, log)           # bad options fail here, before the corpus is even made
        check_fits(pretrain_needs(options, train))   # and sizes that cannot fit in memory
        text, source = load_corpus(options)
        tokenizer = tokenizer_for_run(options, text)
        dataset = CausalLMDataset(np.asarray(tokenizer.encode(text), dtype=np.int32), source=source)
        dataset.check_block_size(options.block_size, "train")
        dataset.check_block_size(options.block_size, "val")
    # options.vocab_size is the BPE option; the model's vocabulary is whatever the tokenizer ended with
    config = resumed.model_config if resumed else config_from_options(
        GPTConfig, options, vocab_size=tokenizer.vocab_size, norm_first=not options.post_ln)
    record_run(options, resumed, config, train, tokenizer)
    model = GPT(config, rng=np.random.default_rng(options.seed))
    log(f"GPT: {model.num_parameters():,} parameters | {source}: {len(dataset.train_tokens):,} train / "
        f"{len(dataset.val_tokens):,} val tokens, vocabulary {tokenizer.vocab_size}")
    B, T = train.batch_size, config.block_size
    trainer = Trainer(
        model, train,
        get_batch=lambda rng: dataset.get_batch(rng, B, T),
        loss_fn=lambda m, batch: (m(batch[0], batch[1])[1], {}),
        eval_batches=dataset.fixed_validation_batches(train.eval_iters, B, T, seed=train.seed),
        run_dir=options.out, tokens_per_batch=B * T, log=log)
    if resumed:
        trainer.resume()
    trainer.train()
    return trainer


def bert_loss(model, batch):
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                batch["mlm_labels"], batch.get("nsp_labels"))
    metrics = {"mlm_acc": out["mlm_accuracy"]}
    if "nsp_loss" in out:
        metrics.update(mlm_loss=float(out["mlm_loss"].data), nsp_acc=out["nsp_accuracy"])
    return out["loss"], metrics


def pretraining_batcher(options, text, tokenizer, source):
    """pretrain-bert's batches of `text`: NSP pairs (single segments with --no-nsp), masked as the options say."""
    return PretrainingBatcher.from_tokenizer(
        split_documents(text), tokenizer, max_seq_length=options.block_size, next_sentence=not options.no_nsp,
        mask_prob=options.mask_prob, max_predictions=options.max_predictions,
        word_starts=word_starts_for_run(options, tokenizer), source=source)


def pretrain_bert(options, log=print):
    """Pretrain a BERT (MLM, plus NSP unless --no-nsp), or continue the run in --out; returns the Trainer."""
    resumed = open_run(options, ("bert",), log)  # --resume: the run's settings become the options here
    with naming_the_record(resumed, options.out):
        train = train_config(options, log)           # bad options fail here, before the corpus is even made
        check_fits(pretrain_needs(options, train, bert=True))    # and sizes that cannot fit in memory
        text, source = load_corpus(options)
        tokenizer = tokenizer_for_run(options, text)
        batcher = pretraining_batcher(options, text, tokenizer, source)
    # --block-size is BERT's longest input; its feed-forward is 4 x wide, as in BERT
    config = resumed.model_config if resumed else config_from_options(
        BertConfig, options, vocab_size=tokenizer.vocab_size, max_position=options.block_size,
        intermediate_size=4 * options.n_embd)
    record_run(options, resumed, config, train, tokenizer)
    model = BertForPreTraining(config, rng=np.random.default_rng(options.seed))
    log(f"BERT: {model.num_parameters():,} parameters | {source}: {len(batcher.splits['train']):,} train / "
        f"{len(batcher.splits['val']):,} val documents, vocabulary {tokenizer.vocab_size}, "
        f"{'MLM + NSP' if not options.no_nsp else 'MLM only'}")
    B = train.batch_size
    trainer = Trainer(
        model, train,
        get_batch=lambda rng: batcher.get_batch(rng, B),
        loss_fn=bert_loss,
        eval_batches=batcher.fixed_validation_batches(train.eval_iters, B, seed=train.seed),
        run_dir=options.out, tokens_per_batch=B * config.max_position, log=log)
    if resumed:
        trainer.resume()
    trainer.train()
    return trainer
