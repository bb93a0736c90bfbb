"""Pretraining runs: text -> tokenizer -> batches -> model -> Trainer, for GPT and for BERT.

`python -m numpretrain pretrain-gpt` and `pretrain-bert` call these, and so do the demos.
Options arrive as an argparse Namespace (see cli.py for their names and meanings).
"""

import os

import numpy as np

from numpretrain.data import CausalLMDataset, PretrainingBatcher, read_text_file, split_documents
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.errors import CheckpointError, DataError
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.runs import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, check_fits_weights_file, load_config, save_config
from numpretrain.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from numpretrain.training.trainer import TrainConfig, Trainer


def load_corpus(options):
    """(text, source name): the user's file, or the built-in corpus generated from a seed."""
    if options.corpus:
        return read_text_file(options.corpus), options.corpus
    documents = generate_documents(options.n_documents, seed=options.corpus_seed,
                                   review_share=options.review_share)
    return corpus_text(documents), f"built-in corpus ({options.n_documents} documents, seed {options.corpus_seed})"


def train_config(options):
    return TrainConfig(max_iters=options.max_iters, batch_size=options.batch_size, lr=options.lr,
                       min_lr=options.min_lr, warmup_iters=options.warmup_iters,
                       weight_decay=options.weight_decay, beta1=options.beta1, beta2=options.beta2,
                       grad_clip=options.grad_clip, grad_accum=options.grad_accum,
                       eval_interval=options.eval_interval, eval_iters=options.eval_iters,
                       log_interval=options.log_interval, seed=options.seed,
                       skip_nonfinite=options.skip_nonfinite)


def prepare_run_dir(options, text, model_type):
    """The tokenizer for this run: trained on the text for a new run, read back for --resume."""
    out = options.out
    config_path = os.path.join(out, CONFIG_FILE)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: exists and is not a directory; --out needs a directory for the run")
    if options.resume and os.path.exists(config_path):
        saved = load_config(out)
        if saved.to_dict()["model_type"] != model_type:
            raise CheckpointError(f"{out}: holds a {saved.to_dict()['model_type']} run, not a {model_type} run")
        if os.path.exists(os.path.join(out, MODEL_FILE)):     # no absurd sizes: refuse before allocating
            check_fits_weights_file(saved, config_path, os.path.join(out, MODEL_FILE))
        return load_tokenizer(os.path.join(out, TOKENIZER_FILE)), saved
    if os.path.exists(config_path) and not options.resume:
        raise DataError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    os.makedirs(out, exist_ok=True)
    if getattr(options, "tokenizer", "char") == "bpe":
        tokenizer = BPETokenizer.train(text, vocab_size=options.vocab_size)
    else:
        tokenizer = CharTokenizer.train(text)
    tokenizer.save(os.path.join(out, TOKENIZER_FILE))
    return tokenizer, None


def pretrain_gpt(options, log=print):
    """Train a GPT on the corpus; returns the Trainer (its model, history and run_dir)."""
    text, source = load_corpus(options)
    tokenizer, saved_config = prepare_run_dir(options, text, "gpt")
    dataset = CausalLMDataset(np.asarray(tokenizer.encode(text), dtype=np.int32), source=source)
    dataset.check_block_size(options.block_size, "train")
    dataset.check_block_size(options.block_size, "val")
    config = saved_config or GPTConfig(vocab_size=tokenizer.vocab_size, block_size=options.block_size,
                                       n_layer=options.n_layer, n_head=options.n_head, n_embd=options.n_embd,
                                       dropout=options.dropout, norm_first=not options.post_ln)
    train = train_config(options)
    if saved_config is None:
        save_config(options.out, config, vars(train))
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
    if options.resume:
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


def pretrain_bert(options, log=print):
    """Pretrain a BERT (MLM, plus NSP unless --no-nsp); returns the Trainer."""
    text, source = load_corpus(options)
    tokenizer, saved_config = prepare_run_dir(options, text, "bert")
    documents = split_documents(text)
    batcher = PretrainingBatcher.from_tokenizer(
        documents, tokenizer, max_seq_length=options.block_size, next_sentence=not options.no_nsp,
        mask_prob=options.mask_prob, max_predictions=options.max_predictions, source=source)
    config = saved_config or BertConfig(vocab_size=tokenizer.vocab_size, max_position=options.block_size,
                                        n_layer=options.n_layer, n_head=options.n_head, n_embd=options.n_embd,
                                        intermediate_size=4 * options.n_embd, dropout=options.dropout)
    train = train_config(options)
    if saved_config is None:
        save_config(options.out, config, vars(train))
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
    if options.resume:
        trainer.resume()
    trainer.train()
    return trainer
