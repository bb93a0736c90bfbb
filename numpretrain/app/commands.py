"""What each `python -m numpretrain COMMAND` does, given its parsed options (see cli.py)."""

import io
import os

import numpy as np

from numpretrain.app import probing
from numpretrain.app.footprint import check_fits, generate_needs
from numpretrain.data.builtin.probes import probes
from numpretrain.storage.atomic import write_bytes
from numpretrain.storage.formats import load_json
from numpretrain.storage.runs import load_pretrained


def pretrain_gpt(options):
    from numpretrain.app.pretrain import pretrain_gpt as run
    run(options)
    print(f"saved to {options.out}")


def pretrain_bert(options):
    from numpretrain.app.pretrain import pretrain_bert as run
    run(options)
    print(f"saved to {options.out}")


def _check_at_least(options, minimum, *names):
    """Options that count something must be at least `minimum` (a count of 0 prints nothing)."""
    for name in names:
        value = getattr(options, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def generate(options):
    _check_at_least(options, 1, "max_new_tokens", "num_samples", "top_k")
    if options.top_p is not None and not 0 < options.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {options.top_p}")
    check_fits(generate_needs(options))
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="gpt")
    if not options.prompt:
        raise ValueError("--prompt is empty: give the text to continue, e.g. --prompt 今天天气很")
    probing.warn_unknown_characters(tokenizer, options.prompt, "the prompt")
    ids = tokenizer.encode(options.prompt)
    if len(ids) > model.config.block_size:
        raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                         f"{model.config.block_size} tokens")
    for i in range(options.num_samples):
        out = model.generate(np.asarray([ids]), options.max_new_tokens, temperature=options.temperature,
                             top_k=options.top_k, top_p=options.top_p, seed=options.seed + i,
                             greedy=options.greedy, use_cache=not options.no_cache)
        print(tokenizer.decode([int(t) for t in out[0]]))
        if options.num_samples > 1:
            print("---")


def probe(options):
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="gpt")
    correct = 0
    all_probes = probes()
    probing.warn_unknown_in_probes(tokenizer, all_probes)
    for p in all_probes:
        result = probing.score_probe(model, tokenizer, p)
        correct += result["correct"]
        best_expected = max(result["expected"], key=result["expected"].get)
        best_contrasting = max(result["contrasting"], key=result["contrasting"].get)
        print(f"[{'ok' if result['correct'] else '--'}] {p.kind:12s} {p.prompt} -> "
              f"{best_expected} (log p {result['expected'][best_expected]:.2f}) vs "
              f"{best_contrasting} ({result['contrasting'][best_contrasting]:.2f})")
    print(f"{correct}/{len(all_probes)} probes answered correctly")


def fill_mask(options):
    _check_at_least(options, 1, "top_k")
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="bert")
    candidates, filled = probing.fill_mask(model, tokenizer, options.text, options.top_k)
    for n, (position, top) in enumerate(candidates.items(), 1):
        shown = "  ".join(f"{token} {p:.3f}" for token, p in top)
        print(f"[MASK] #{n} (position {position}): {shown}")
    print(f"filled: {filled}")


def nsp(options):
    if not (options.sentence_a.strip() and options.sentence_b.strip()):
        raise ValueError("both sentences must hold some text")
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="bert")
    p = probing.nsp_probability(model, tokenizer, options.sentence_a, options.sentence_b)
    print(f"P(B follows A) = {p:.3f}")


def finetune(options):
    from numpretrain.app.finetune import finetune as run
    _, reports = run(options)
    for split, report in reports.items():
        print(f"\n{split} split:\n{report}")
    if options.out:
        print(f"\nsaved to {options.out}")
    else:
        print("\nnothing saved: give --out DIR to keep the fine-tuned model (and checkpoints to --resume from)")


def classify(options):
    from numpretrain.app.finetune import classify_texts
    for text, label, probabilities in classify_texts(options.ckpt, options.texts):
        shown = "  ".join(f"{name} {p:.3f}" for name, p in probabilities.items())
        print(f"{label}\t{shown}\t{text}")


def _new_folder(out):
    """Export and import write into a new or empty folder only: nothing a user saved is overwritten."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"--out {out} already exists and is not an empty folder; give a new one (nothing is overwritten)")


def export_hf(options):
    from numpretrain.storage.hf import save_hf
    model, tokenizer, _ = load_pretrained(options.ckpt)
    _new_folder(options.out)
    save_hf(options.out, model, tokenizer)        # a classifier whose head transformers lacks: an error, nothing written
    architecture = load_json(os.path.join(options.out, "config.json"))["architectures"][0]
    print(f"saved {options.out} ({architecture}); in Python: transformers.AutoTokenizer.from_pretrained"
          f"({options.out!r}), transformers.{architecture}.from_pretrained({options.out!r})")


def import_hf(options):
    from numpretrain.models.bert import BertForPreTraining, BertModel
    from numpretrain.storage.hf import from_pretrained
    from numpretrain.storage.hf_tokenizers import read_hf_tokenizer
    from numpretrain.storage.runs import save_pretrained
    _new_folder(options.out)
    tokenizer = read_hf_tokenizer(options.model)   # first: a folder whose tokenizer is not ours stops here
    model = from_pretrained(options.model, dtype=np.float32)
    if type(model) is BertModel:                   # a run folder holds a BERT with its pretraining heads
        model = from_pretrained(options.model, BertForPreTraining, dtype=np.float32)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{options.model}: the tokenizer has {tokenizer.vocab_size} tokens, the model only "
                         f"{model.config.vocab_size}")
    save_pretrained(options.out, model, tokenizer)
    print(f"saved {options.out} ({type(model).__name__})")


def check_save_path(path):
    """--save names the file to write, exactly (NumPy's np.save would add ".npy" to a name without it):
    refused before the embeddings are computed if it is a folder or its folder does not exist."""
    if os.path.isdir(path):
        raise ValueError(f"--save {path}: is a folder; give the file to write, e.g. "
                         f"{os.path.join(path, 'embeddings.npy')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--save {path}: the folder {folder} does not exist")


def embed(options):
    from numpretrain.app.embed import SentenceEmbedder, cosine_similarity
    if options.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {options.batch_size}")
    if options.save:
        check_save_path(options.save)
    embedder = SentenceEmbedder.from_pretrained(options.model)
    print(embedder)
    vectors = embedder.encode(options.texts, batch_size=options.batch_size)      # (N, C)
    for i, (text, vector) in enumerate(zip(options.texts, vectors)):
        shown = text if len(text) <= 50 else text[:47] + "..."
        head = ", ".join(f"{x:+.4f}" for x in vector[:4])
        print(f"[{i}] {shown!r}: [{head}, ... {vector[-1]:+.4f}]  ({len(vector)} dims, norm {np.linalg.norm(vector):.3f})")
    print("cosine similarity:")
    similarity = cosine_similarity(vectors)
    print("     " + "".join(f"{f'[{j}]':>8}" for j in range(len(vectors))))
    for i, row in enumerate(similarity):
        print(f"{f'[{i}]':>5}" + "".join(f"{x:8.3f}" for x in row))
    if options.save:
        npy = io.BytesIO()
        np.save(npy, vectors.astype(np.float32))
        write_bytes(options.save, npy.getvalue())      # atomically, at exactly the path given
        print(f"saved {vectors.shape} float32 to {options.save}")


def explore(options):
    from numpretrain.app.explore import serve, write_html
    if not 0 <= options.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {options.port}")
    if options.html:
        write_html(options)
    else:
        serve(options)
