"""Fine-tune GPT and BERT on a handful of labelled reviews, and see why pretraining matters.

    python demos/finetune_classifier.py            # about 15 minutes on 2 cores once the pretrained runs exist
    python demos/finetune_classifier.py --quick    # about 2 minutes: one seed, 16 and 64 labels, shorter training

The task: is a review (of a restaurant, a hotel, a film, a shop) positive or negative?
The labelled reviews use half of the sentiment adjectives; the test reviews use only the
other half, and share not a single character with them. So the test can only be passed
by knowing from somewhere else that 肮脏 is bad and 鲜嫩 good: from pretraining on
unlabelled reviews that end in 我还会再来 or 再也不来了. The control split (new reviews
with the labelled adjectives) shows that every model does learn the task it was shown.

0. The pretrained models. runs/demo_gpt is demos/pretrain_gpt.py's GPT; runs/demo_bert is
   demos/pretrain_bert.py's BERT, the textbook recipe (15% masking, next sentence
   prediction, half of the documents reviews); runs/finetune_bert is a BERT with the recipe
   that transfers (below). A finished run is reused; a missing one is trained here first,
   which takes longer: on 2 cores about 10 minutes for the GPT and 15 to 20 for each BERT.
1. Checks that need no label at all: the GPT's validation loss and its zero-shot closing
   preference, and for every model the adjective-embedding gate.
2. The grid: 16, 64 and 256 labels x 3 seeds (each with its own adjective split): fine-tuned
   end to end, a linear probe on the frozen body, the same model from scratch with the same
   budget (the better of two learning rates), and a bag-of-characters baseline.
3. The tables (mean and min-max over seeds) and, with matplotlib, the learning curves
   (runs/finetune_curves.png); every number also lands in runs/finetune_results.json.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from numpretrain import cli
from numpretrain.checkpoint import load_safetensors_metadata
from numpretrain.data.baseline import BagOfCharacters
from numpretrain.data.reviews import LABEL_NAMES, review_dataset, split_adjectives
from numpretrain.finetune import as_gpt_text, finetune
from numpretrain.runs import load_pretrained
from numpretrain.tensor import no_grad

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_bert import FULL as BERT_TEXTBOOK_RECIPE   # noqa: E402  (the pretraining demos' recipes)
from pretrain_gpt import FULL as GPT_RECIPE              # noqa: E402

# BERT's recipe that transfers at this scale (found in a prototype, confirmed here): masked LM
# only, 30% of the characters chosen (still 80% [MASK] / 10% random / 10% kept), a higher peak
# learning rate, and review-only text. The textbook recipe's MLM loss crawls at 2.3 to 2.8 and
# its transfer depends on the seed.
BERT_TRANSFER_RECIPE = [
    "--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "32",
    "--max-iters", "2000", "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "100", "--dropout", "0.1",
    "--no-nsp", "--mask-prob", "0.3", "--max-predictions", "32", "--review-share", "1.0",
    "--n-documents", "40000", "--eval-interval", "250", "--log-interval", "50", "--seed", "0"]

GPT_LOSS_TARGET = 0.65     # nats/char: above it the prototype's GPT transferred at ~70%, below it at ~99%
GATE_THRESHOLD = 0.95      # every BERT that transferred in the prototype scored at least this on the gate
POSITIVE_CLOSING, NEGATIVE_CLOSING = "我还会再来", "再也不来了"


# ----------------------------------------------------------------------------
# 0. the pretrained models

def finished(run_dir):
    """True when run_dir holds a run whose weights reached its max_iters."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            max_iters = json.load(f)["train"]["max_iters"]
        return int(load_safetensors_metadata(os.path.join(run_dir, "model.safetensors"))["step"]) >= max_iters
    except (OSError, KeyError, ValueError):
        return False


def ensure_pretrained(run_dir, command, recipe, minutes):
    if finished(run_dir):
        print(f"  {run_dir}: reusing the finished run")
        return
    print(f"  {run_dir}: not there (or unfinished): training it now, about {minutes} minutes on 2 cores")
    status = cli.main([command, "--out", run_dir, *recipe, "--resume"])
    if status:
        sys.exit(status)


# ----------------------------------------------------------------------------
# 1. checks that need no label

def last_val_loss(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        losses = [r["val_loss"] for r in map(json.loads, filter(str.strip, f)) if "val_loss" in r]
    return losses[-1] if losses else float("nan")


def closing_logprobs(gpt, tokenizer, texts, closing, batch_size=128):
    """log P(closing | review) under a pretrained GPT, for each review laid out as in pretraining: (N,)."""
    tail = tokenizer.encode(closing)
    sequences = [tokenizer.encode(as_gpt_text(text)) + tail for text in texts]
    scores = np.zeros(len(texts))
    for start in range(0, len(texts), batch_size):
        chunk = sequences[start:start + batch_size]
        T = max(map(len, chunk))
        ids = np.zeros((len(chunk), T), dtype=np.int64)             # (B, T), right-padded
        for row, sequence in enumerate(chunk):
            ids[row, :len(sequence)] = sequence
        with no_grad():
            logits = gpt(ids[:, :-1])[0].data                         # (B, T-1, V)
        logits = logits - logits.max(-1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        for row, sequence in enumerate(chunk):
            positions = np.arange(len(sequence) - len(tail), len(sequence))     # where the closing's tokens are
            scores[start + row] = logprobs[row, positions - 1, sequence[-len(tail):]].sum()
    return scores


def zero_shot_accuracy(gpt, tokenizer, examples):
    """Label each review by the closing the GPT finds likelier after it: no labels, no training."""
    texts = [text for text, _ in examples]
    positive = closing_logprobs(gpt, tokenizer, texts, POSITIVE_CLOSING) > \
        closing_logprobs(gpt, tokenizer, texts, NEGATIVE_CLOSING)
    return float(np.mean(positive == np.array([label == 1 for _, label in examples])))


def embedding_gate(embeddings, tokenizer, seed):
    """Classify each held-out adjective by the nearer polarity centroid of the labelled adjectives.

    An adjective's vector is the mean of its two characters' input embeddings (V, C) rows.
    Needs no label beyond the adjective lists themselves; returns the share classified right.
    """
    labelled, heldout = split_adjectives(seed)
    vector = lambda word: embeddings[tokenizer.encode(word)].mean(axis=0)            # (C,)
    centroids = np.stack([np.mean([vector(w) for w in labelled[p]], axis=0) for p in LABEL_NAMES])   # (2, C)
    right = [np.argmin(np.linalg.norm(centroids - vector(word), axis=1)) == label
             for label, polarity in enumerate(LABEL_NAMES) for word in heldout[polarity]]
    return float(np.mean(right))


def input_embeddings(model):
    return (model.wte if hasattr(model, "wte") else model.bert.embeddings.word_embeddings).weight.data


# ----------------------------------------------------------------------------
# 2. the grid

def finetune_accuracy(ckpt, n_labels, seed, options):
    """(test accuracy, control accuracy) of one fine-tuning run of `python -m numpretrain finetune`."""
    argv = ["finetune", "--ckpt", ckpt, "--task", "reviews", "--labels", str(n_labels),
            "--seed", str(seed), "--data-seed", str(seed), *options]
    _, reports = finetune(cli.build_parser().parse_args(argv), log=lambda *_: None)
    return reports["test"].accuracy, reports["control"].accuracy


def bag_of_characters_accuracy(n_labels, seed):
    data = review_dataset(seed)
    baseline = BagOfCharacters().fit(*zip(*data.train[:n_labels]))
    return baseline.accuracy(*zip(*data.test)), baseline.accuracy(*zip(*data.control))


def summary(values):
    values = np.asarray(values)
    return f"{values.mean():.2f} [{values.min():.2f}-{values.max():.2f}]" if len(values) > 1 else f"{values[0]:.2f}"


# ----------------------------------------------------------------------------
# the settings of the grid

GPT_RUN, BERT_RUN, BERT_TEXTBOOK_RUN = "runs/demo_gpt", "runs/finetune_bert", "runs/demo_bert"
COMMON = ["--batch-size", "16", "--warmup-iters", "5", "--log-interval", "1000"]
PROBE = ["--freeze", "--max-iters", "300", "--lr", "1e-2", "--min-lr", "1e-3"]   # the head alone: cheap steps
SCRATCH_LRS = ("3e-4", "1e-3")


def methods(steps, quick):
    """(row name, checkpoint, finetune options or a list of alternatives whose best counts)."""
    gpt, bert = ["--lr", "1e-3", "--min-lr", "1e-4"], ["--lr", "3e-4", "--min-lr", "3e-5", "--pooling", "mean"]
    budget = [*COMMON, "--max-iters", str(steps)]
    scratch_lrs = SCRATCH_LRS[-1:] if quick else SCRATCH_LRS
    rows = [
        ("GPT, pretrained, fine-tuned", GPT_RUN, [*budget, *gpt]),
        ("GPT, pretrained, linear probe", GPT_RUN, [*COMMON, *PROBE]),
        ("GPT, from scratch", GPT_RUN, [[*budget, "--from-scratch", "--lr", lr] for lr in scratch_lrs]),
        ("BERT, transfer recipe, fine-tuned", BERT_RUN, [*budget, *bert]),
        ("BERT, transfer recipe, linear probe", BERT_RUN, [*COMMON, *PROBE, "--pooling", "mean"]),
        ("BERT, textbook recipe, fine-tuned", BERT_TEXTBOOK_RUN, [*budget, *bert]),
        ("BERT, textbook recipe, linear probe", BERT_TEXTBOOK_RUN, [*COMMON, *PROBE, "--pooling", "mean"]),
        ("BERT, from scratch", BERT_RUN, [[*budget, "--from-scratch", "--pooling", "mean", "--lr", lr]
                                          for lr in scratch_lrs]),
    ]
    return [row for row in rows if not (quick and "textbook" in row[0])]


def run_grid(rows, label_counts, seeds, results):
    """Fill results[row][n] = {"test": [...], "control": [...]} (one entry per seed)."""
    for name, ckpt, options in rows:
        started = time.time()
        alternatives = options if isinstance(options[0], list) else [options]
        for n in label_counts:
            # every alternative over all seeds, then keep the one with the best mean test accuracy
            runs = [[finetune_accuracy(ckpt, n, seed, alternative) for seed in seeds] for alternative in alternatives]
            best = max(range(len(runs)), key=lambda i: np.mean([test for test, _ in runs[i]]))
            results[name][n] = {"test": [t for t, _ in runs[best]], "control": [c for _, c in runs[best]]}
            if len(alternatives) > 1:
                results[name][n]["lr"] = alternatives[best][alternatives[best].index("--lr") + 1]
        print(f"  {name:38s} {time.time() - started:6.0f} s", flush=True)


def print_table(results, label_counts, split):
    print(f"\n{split} accuracy, mean [min-max] over seeds"
          + (" (held-out adjectives: only pretraining can help)" if split == "test" else
             " (new reviews with the labelled adjectives)"))
    print(f"{'':38s}" + "".join(f"{f'{n} labels':>20s}" for n in label_counts))
    for name, by_n in results.items():
        cells = [summary(by_n[n][split]) + (f" lr{by_n[n]['lr']}" if "lr" in by_n[n] and split == "test" else "")
                 if n in by_n else "" for n in label_counts]
        print(f"{name:38s}" + "".join(f"{cell:>20s}" for cell in cells))


def plot_curves(results, label_counts, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(pip install matplotlib to get the learning-curve plot)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_n in results.items():
        ns = [n for n in label_counts if n in by_n]
        means = [np.mean(by_n[n]["test"]) for n in ns]
        low = [m - min(by_n[n]["test"]) for m, n in zip(means, ns)]
        high = [max(by_n[n]["test"]) - m for m, n in zip(means, ns)]
        ax.errorbar(ns, means, yerr=[low, high], marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(label_counts, [str(n) for n in label_counts])
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("held-out-adjective test accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"learning curves saved to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 16 and 64 labels, shorter fine-tuning, no textbook BERT (about 2 minutes)")
    args = parser.parse_args()
    started = time.time()
    seeds = (0,) if args.quick else (0, 1, 2)
    label_counts = (16, 64) if args.quick else (16, 64, 256)
    steps = 40 if args.quick else 60

    print("== 0. the pretrained models ==")
    ensure_pretrained(GPT_RUN, "pretrain-gpt", GPT_RECIPE, 10)
    ensure_pretrained(BERT_RUN, "pretrain-bert", BERT_TRANSFER_RECIPE, 20)
    if not args.quick:
        ensure_pretrained(BERT_TEXTBOOK_RUN, "pretrain-bert", BERT_TEXTBOOK_RECIPE, 15)
    fine_tuning_started = time.time()

    print("\n== 1. checks that need no label ==")
    gpt, tokenizer, _ = load_pretrained(GPT_RUN, expect="gpt")
    loss = last_val_loss(GPT_RUN)
    print(f"GPT validation loss {loss:.3f} nats/char (transfer needs it below about {GPT_LOSS_TARGET})")
    if not loss < GPT_LOSS_TARGET:
        print(f"  warning: {GPT_RUN} is not trained far enough to transfer; retrain it with demos/pretrain_gpt.py")
    zero_shot = [zero_shot_accuracy(gpt, tokenizer, review_dataset(seed).test) for seed in seeds]
    print(f"GPT zero-shot: after a held-out review, is {POSITIVE_CLOSING} likelier than {NEGATIVE_CLOSING} "
          f"exactly when the review is positive? {summary(zero_shot)} of the test reviews")
    print(f"adjective-embedding gate (nearest polarity centroid; transfer expected at >= {GATE_THRESHOLD}):")
    gates = {}
    for run in (GPT_RUN, BERT_RUN) if args.quick else (GPT_RUN, BERT_RUN, BERT_TEXTBOOK_RUN):
        model, tokenizer, _ = load_pretrained(run, expect=("gpt", "bert"))
        gates[run] = [embedding_gate(input_embeddings(model), tokenizer, seed) for seed in seeds]
        verdict = "transfer expected" if min(gates[run]) >= GATE_THRESHOLD else "transfer doubtful"
        print(f"  {run:22s} {summary(gates[run])}  ({verdict})")

    print(f"\n== 2. the grid: {', '.join(map(str, label_counts))} labels x {len(seeds)} seed(s) ==")
    results = {"bag of characters": {}}
    for n in label_counts:
        runs = [bag_of_characters_accuracy(n, seed) for seed in seeds]
        results["bag of characters"][n] = {"test": [t for t, _ in runs], "control": [c for _, c in runs]}
    results["GPT, zero-shot (no labels)"] = {n: {"test": zero_shot, "control": [float("nan")]} for n in label_counts}
    rows = methods(steps, args.quick)
    results.update({name: {} for name, _, _ in rows})
    run_grid(rows, label_counts, seeds, results)

    print("\n== 3. results ==")
    print_table(results, label_counts, "test")
    print_table({k: v for k, v in results.items() if "zero-shot" not in k}, label_counts, "control")
    os.makedirs("runs", exist_ok=True)
    with open("runs/finetune_results.json", "w", encoding="utf-8") as f:
        json.dump({"seeds": seeds, "label_counts": label_counts, "results": results, "gates": gates,
                   "gpt_val_loss": loss, "quick": args.quick}, f, indent=1)
    plot_curves(results, label_counts, "runs/finetune_curves.png")
    print(f"\nfine-tuning and evaluation took {(time.time() - fine_tuning_started) / 60:.1f} minutes "
          f"({(time.time() - started) / 60:.1f} in all); results in runs/finetune_results.json")


if __name__ == "__main__":
    main()
