"""Tiny folders of every kind numpretrain reads, and the one call that reads each, for the hostile-file
tests (test_hostile_json.py by hand, test_fuzz_files.py by hypothesis).

Each reader returns normally or raises our own error; `outcome` runs one and says which, and how
much memory it took (tracemalloc, as tests/test_hostile_files.py measures it).
"""

import contextlib
import json
import os
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from numpretrain.data.classify import load_labelled_file
from numpretrain.errors import NumpretrainError
from numpretrain.models.bert import BertConfig, BertModel
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.formats import load_safetensors
from numpretrain.storage.hf import from_pretrained, save_hf
from numpretrain.storage.runs import load_pretrained, save_pretrained
from numpretrain.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer
from numpretrain.training.trainer import TrainConfig, Trainer

TEXT = "今天天气很好。我们去公园散步。\n\n明天下雨，我们在家看书。"
WORDPIECE_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghij", "hello", "world", "##s"]
TRAIN = TrainConfig(max_iters=4, warmup_iters=0, log_interval=1, eval_interval=2, eval_iters=1)
BATCH = (np.ones((2, 4), dtype=np.int64), np.ones((2, 4), dtype=np.int64))
LABELS = [{"text": "很好", "label": "positive"}, {"text": "不好", "label": "negative", "extra": [1, {"a": 2}]},
          {"text": "一般", "label": 3}]


def tiny_trainer(run_dir, max_iters=TRAIN.max_iters):
    model = GPT(GPTConfig(vocab_size=20, block_size=4, n_layer=1, n_head=2, n_embd=8), rng=np.random.default_rng(0))
    config = TrainConfig(**{**TRAIN.__dict__, "max_iters": max_iters})
    return Trainer(model, config, get_batch=lambda rng: BATCH, loss_fn=lambda m, b: (m(*b)[1], {}),
                   eval_batches=[BATCH], run_dir=str(run_dir), log=lambda *a: None)


def make_folders(base):
    """{kind: folder} under `base`: our run folders (char and BPE tokenizers), a finished training
    run (state and metrics.jsonl), a Hugging Face BERT with its WordPiece files and a sharded copy,
    and a JSONL label file."""
    base = Path(base)
    rng = np.random.default_rng(0)
    char = CharTokenizer.train(TEXT)
    save_pretrained(base / "gpt", GPT(GPTConfig(vocab_size=char.vocab_size, block_size=8, n_layer=1, n_head=2,
                                                n_embd=8), rng=rng), char)
    bpe = BPETokenizer.train(TEXT * 3, vocab_size=270)
    save_pretrained(base / "bpe", GPT(GPTConfig(vocab_size=270, block_size=8, n_layer=1, n_head=2, n_embd=8),
                                      rng=rng), bpe)
    os.makedirs(base / "run")
    tiny_trainer(base / "run").train()
    bert = BertModel(BertConfig(vocab_size=len(WORDPIECE_TOKENS), max_position=8, n_layer=1, n_head=2, n_embd=8,
                                intermediate_size=16), rng=rng)
    save_hf(base / "hf", bert, WordPieceTokenizer(WORDPIECE_TOKENS))
    shutil.copytree(base / "hf", base / "sharded")
    os.rename(base / "sharded" / "model.safetensors", base / "sharded" / "model-00001-of-00001.safetensors")
    names = load_safetensors(base / "hf" / "model.safetensors")
    (base / "sharded" / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {name: "model-00001-of-00001.safetensors" for name in names}}))
    os.makedirs(base / "labels")
    (base / "labels" / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in LABELS),
                                                 encoding="utf-8")
    return {name: base / name for name in ("gpt", "bpe", "run", "hf", "sharded", "labels")}


def resume_and_step(folder):
    """--resume as the trainer does it, then one step: a state that loads must also train."""
    trainer = tiny_trainer(folder, max_iters=TRAIN.max_iters + 1)
    trainer.resume()
    trainer.train_step()


def read_hf(folder):
    from_pretrained(folder, log=lambda line: None)
    WordPieceTokenizer.from_pretrained(folder)


# file kind -> (folder kind, the file in it, the call that reads it)
READERS = {
    "config.json": ("gpt", "config.json", load_pretrained),
    "tokenizer.json (char)": ("gpt", "tokenizer.json", lambda d: load_tokenizer(d / "tokenizer.json")),
    "tokenizer.json (BPE)": ("bpe", "tokenizer.json", lambda d: load_tokenizer(d / "tokenizer.json")),
    "training state": ("run", "training_state.safetensors", resume_and_step),
    "metrics.jsonl": ("run", "metrics.jsonl", resume_and_step),
    "label file (JSONL)": ("labels", "train.jsonl", lambda d: load_labelled_file(d / "train.jsonl")),
    "Hugging Face config.json": ("hf", "config.json", read_hf),
    "tokenizer_config.json": ("hf", "tokenizer_config.json", read_hf),
    "vocab.txt": ("hf", "vocab.txt", read_hf),
    "model.safetensors.index.json": ("sharded", "model.safetensors.index.json", read_hf),
}


@contextlib.contextmanager
def copy_of(folder):
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / folder.name
        shutil.copytree(folder, target, symlinks=True)
        yield target


def outcome(read, folder):
    """(None or the error raised, peak bytes traced) of read(folder); anything but our error escapes."""
    tracemalloc.start()
    try:
        read(folder)
        return None, tracemalloc.get_traced_memory()[1]
    except NumpretrainError as error:
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def state_header(path):
    """(header dict, the bytes after it) of a safetensors file."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_state_json(path, text):
    """Replace the trainer state's JSON text in a training_state.safetensors (the tensors are kept)."""
    header, body = state_header(path)
    header["__metadata__"]["trainer_state"] = text
    data = json.dumps(header).encode()
    data += b" " * (-len(data) % 8)
    Path(path).write_bytes(len(data).to_bytes(8, "little") + data + body)


def edit_somewhere(data, obj, values):
    """Replace, delete or add one entry (a value drawn from the strategy `values`) at a random
    place inside a JSON object or array, in place."""
    while isinstance(obj, (dict, list)) and obj and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(obj) if isinstance(obj, dict) else range(len(obj))))
        if not isinstance(obj[key], (dict, list)) or not obj[key]:
            break
        obj = obj[key]
    if not isinstance(obj, (dict, list)) or not obj:
        return
    key = data.draw(st.sampled_from(sorted(obj) if isinstance(obj, dict) else range(len(obj))))
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "replace":
        obj[key] = data.draw(values)
    elif action == "delete":
        del obj[key]
    elif isinstance(obj, dict):
        obj[data.draw(st.text(max_size=8))] = data.draw(values)
    else:
        obj.append(data.draw(values))
