"""Fine-tune GPT and BERT on a handful of labelled reviews, and see why pretraining matters.

    python demos/finetune_classifier.py            # about 4 minutes on 2 cores, once the pretrained runs exist
    python demos/finetune_classifier.py --quick    # about half a minute: one seed, 16 and 64 labels, fewer rows

The task: is a review (of a restaurant, a hotel, a film, a shop) positive or negative?
The labelled reviews use half of the sentiment adjectives; the test reviews use only the
other half, and share not a single character with them. So the test can only be passed
by knowing from somewhere else that 肮脏 is bad and 鲜嫩 good: from pretraining on
unlabelled reviews that end in 我还会再来 or 再也不来了. The control split (new reviews
with the labelled adjectives) shows that every model does learn the task it was shown.

0. The pretrained models. runs/demo_gpt is demos/pretrain_gpt.py's GPT; runs/demo_bert is
   demos/pretrain_bert.py's BERT, the default recipe: the textbook objective (15% masking,
   next sentence prediction, three reviews in four documents) at lr 2e-3; runs/finetune_bert is
   a BERT with the transfer recipe (below). A finished run is reused; a missing one is trained
   here first, which takes longer (--quick too): on 2 cores about 10 minutes for the GPT and
   10 to 20 for each BERT. The GPT is trained to a loss, not for a time: its steps double until its
   validation loss is below GPT_LOSS_TARGET.
1. Checks that need no label at all: the GPT's validation loss and its zero-shot closing
   preference, every model's adjective-embedding gate, and every BERT's zero-shot cloze.
2. The grid: 16, 64 and 256 labels x 3 seeds (each with its own adjective split): fine-tuned
   end to end, a linear probe on the frozen body, the same model from scratch with the same
   budget (the better of two learning rates, judged on the test split: the most generous
   choice for scratch), a bag-of-characters baseline, and for the default BERT a cloze: its
   MLM head asked what follows the review, with no new layer (finetune --pooling cloze), with
   no label and fine-tuned. Runs go to --jobs processes.
3. The tables (mean and min-max over seeds) and, with matplotlib, the learning curves
   (runs/finetune_curves.png); every number also lands in runs/finetune_results.json
   (runs/finetune_quick_* with --quick).
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# One BLAS thread per process: the runs are small, and parallel processes (--jobs) use the cores better.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpretrain  # noqa: E402, F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np  # noqa: E402

from numpretrain.app import cli  # noqa: E402
from numpretrain.app.finetune import as_gpt_text, build_classifier, encode_examples, finetune, predict
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import no_grad
from numpretrain.data.baselines import BagOfCharacters
from numpretrain.data.builtin.reviews import (LABEL_NAMES, REVIEW_CLOZE, REVIEW_VERBALIZERS, review_dataset,
                                              split_adjectives)
from numpretrain.storage.formats import load_safetensors_metadata
from numpretrain.storage.runs import load_pretrained

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_bert import FULL as BERT_DEFAULT_RECIPE    # noqa: E402  (the pretraining demos' recipes)
from pretrain_gpt import FULL as GPT_RECIPE              # noqa: E402

# BERT's recipe that transferred first at this scale (found in an earlier prototype, which is not in
# this repository): masked LM only, 30% of the characters chosen (still 80% [MASK] / 10% random /
# 10% kept), a higher peak learning rate, and review-only text. demos/bert_recipes.py shows that the
# learning rate alone was what the textbook recipe lacked; the default recipe is that one now.
BERT_TRANSFER_RECIPE = [
    "--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "32",
    "--max-iters", "2000", "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "100", "--dropout", "0.1",
    "--no-nsp", "--mask-prob", "0.3", "--max-predictions", "32", "--review-share", "1.0",
    "--n-documents", "40000", "--eval-interval", "250", "--log-interval", "50", "--seed", "0"]

GPT_LOSS_TARGET = 0.65     # nats/char: above it the earlier prototype's GPT transferred at ~70%, below it at ~99%
GATE_THRESHOLD = 0.95      # every BERT that transferred in that prototype scored at least this on the gate
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
    resume = ["--resume"] if os.path.exists(os.path.join(run_dir, "config.json")) else []   # an unfinished run continues
    status = cli.main([command, "--out", run_dir, *recipe, *resume])
    if status:
        sys.exit(status)


def ensure_gpt_trained_to_loss(run_dir, recipe, max_doublings=2):
    """Below GPT_LOSS_TARGET a GPT transfers; a run above it continues, with twice the steps, until it is below."""
    iters = int(recipe[recipe.index("--max-iters") + 1])
    for _ in range(max_doublings):
        if last_val_loss(run_dir) < GPT_LOSS_TARGET:
            return
        iters *= 2
        print(f"  {run_dir}: validation loss {last_val_loss(run_dir):.3f} is above {GPT_LOSS_TARGET}: "
              f"continuing to {iters} steps")
        longer = [*recipe[:recipe.index("--max-iters")], "--max-iters", str(iters),
                  *recipe[recipe.index("--max-iters") + 2:]]
        if cli.main(["pretrain-gpt", "--out", run_dir, *longer, "--resume"]):
            sys.exit(1)
    if not last_val_loss(run_dir) < GPT_LOSS_TARGET:
        print(f"  warning: {run_dir} is still above {GPT_LOSS_TARGET} nats/char; expect its transfer to fail")


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
        logprobs = logits - stable_softmax(logits)[1]                 # log-probabilities (B, T-1, V)
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
    Uses the labelled adjectives' polarity but no labelled review; returns the share classified right.
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

GPT_RUN, BERT_RUN, BERT_DEFAULT_RUN = "runs/demo_gpt", "runs/finetune_bert", "runs/demo_bert"
COMMON = ["--batch-size", "16", "--warmup-iters", "5", "--log-interval", "1000"]
# The head alone, trained to convergence: a logistic regression on the frozen body's vectors.
# Its steps cost next to nothing (numpretrain/app/finetune.py runs the body once), so it gets many, fast ones
# and no regularisation; with 300 steps at lr 1e-2 BERT's probe stopped short (80% instead of 91% at 256 labels).
PROBE = ["--freeze", "--max-iters", "1000", "--lr", "3e-2", "--min-lr", "3e-3", "--weight-decay", "0", "--dropout", "0"]
SCRATCH_LRS = ("3e-4", "1e-3")
FINETUNE_STEPS = 60        # at batch 16: about 4 epochs of 256 labels, 60 of 16
# The cloze starts from the MLM head's own answer, which is already right most of the time; at lr 1e-4
# 30 steps on 16 reviews overfitted it (0.91 against 0.94 at 1e-5 on one default-recipe BERT, 3 seeds).
CLOZE = ["--pooling", "cloze", "--max-iters", "30", "--lr", "1e-5", "--min-lr", "1e-6", "--warmup-iters", "3"]


def methods(steps, quick):
    """(row name, checkpoint, finetune options or a list of alternatives whose best counts)."""
    gpt, bert = ["--lr", "1e-3", "--min-lr", "1e-4"], ["--lr", "3e-4", "--min-lr", "3e-5", "--pooling", "mean"]
    budget = [*COMMON, "--max-iters", str(steps)]
    scratch_lrs = SCRATCH_LRS[-1:] if quick else SCRATCH_LRS
    rows = [
        ("GPT, pretrained, fine-tuned", GPT_RUN, [*budget, *gpt]),
        ("GPT, pretrained, fine-tuned, no LM loss", GPT_RUN, [*budget, *gpt, "--lm-weight", "0"]),
        ("GPT, pretrained, linear probe", GPT_RUN, [*COMMON, *PROBE]),
        ("GPT, from scratch", GPT_RUN, [[*budget, "--from-scratch", "--lr", lr] for lr in scratch_lrs]),
        ("BERT, transfer recipe, fine-tuned", BERT_RUN, [*budget, *bert]),
        ("BERT, transfer recipe, linear probe", BERT_RUN, [*COMMON, *PROBE, "--pooling", "mean"]),
        ("BERT, default recipe, fine-tuned", BERT_DEFAULT_RUN, [*budget, *bert]),
        ("BERT, default recipe, linear probe", BERT_DEFAULT_RUN, [*COMMON, *PROBE, "--pooling", "mean"]),
        ("BERT, default recipe, cloze fine-tuned", BERT_DEFAULT_RUN, [*COMMON, *CLOZE]),
        ("BERT, from scratch", BERT_RUN, [[*budget, "--from-scratch", "--pooling", "mean", "--lr", lr]
                                          for lr in scratch_lrs]),
    ]
    return [row for row in rows if not (quick and "default recipe" in row[0])]


def cloze_zero_shot(ckpt, seed):
    """Test accuracy of a BERT's MLM head answering the reviews' cloze, with no label and no training."""
    model, tokenizer = build_classifier(ckpt, 2, list(LABEL_NAMES), pooling="cloze",
                                        cloze=REVIEW_CLOZE, verbalizers=list(REVIEW_VERBALIZERS))
    data = encode_examples(model, tokenizer, review_dataset(seed).test, model.body.config.max_position)
    return float(np.mean(predict(model, data) == data["labels"]))


def label_free_checks(bodies, seeds):
    """GPT's validation loss and zero-shot accuracy, every body's embedding gate and every BERT's
    zero-shot cloze, printed and returned."""
    gpt, tokenizer, _ = load_pretrained(GPT_RUN, expect="gpt")
    loss = last_val_loss(GPT_RUN)
    print(f"GPT validation loss {loss:.3f} nats/char (transfer needs it below about {GPT_LOSS_TARGET})")
    zero_shot = [zero_shot_accuracy(gpt, tokenizer, review_dataset(seed).test) for seed in seeds]
    print(f"GPT zero-shot: after a held-out review, is {POSITIVE_CLOSING} likelier than {NEGATIVE_CLOSING} "
          f"exactly when the review is positive? For {summary(zero_shot)} of the test reviews")
    print(f"adjective-embedding gate (nearest polarity centroid; transfer expected at >= {GATE_THRESHOLD}):")
    gates = {}
    for run in bodies:
        model, tokenizer, _ = load_pretrained(run, expect=("gpt", "bert"))
        gates[run] = [embedding_gate(input_embeddings(model), tokenizer, seed) for seed in seeds]
        verdict = "transfer expected" if min(gates[run]) >= GATE_THRESHOLD else "transfer doubtful"
        print(f"  {run:22s} {summary(gates[run])}  ({verdict})")
    clozes = {run: [cloze_zero_shot(run, seed) for seed in seeds] for run in bodies if run != GPT_RUN}
    for run, accuracies in clozes.items():
        print(f"BERT zero-shot cloze ({run}): after a held-out review, does the MLM head put 满意 rather than "
              f"失望 after 非常 exactly when the review is positive? For {summary(accuracies)} of the test reviews")
    return loss, zero_shot, gates, clozes


def run_job(job):
    name, ckpt, n, seed, options = job
    return job, finetune_accuracy(ckpt, n, seed, options)


def run_grid(rows, label_counts, seeds, results, jobs):
    """Fill results[row][n] = {"test": [...], "control": [...]} (one entry per seed).

    Every (row, labels, seed, alternative) is one independent fine-tuning run; `jobs` processes
    share them. A row with alternatives (scratch's two learning rates) keeps, for each number
    of labels, the alternative with the best mean test accuracy: the most generous choice.
    """
    todo = [(name, ckpt, n, seed, alternative) for name, ckpt, options in rows for n in label_counts
            for alternative in (options if isinstance(options[0], list) else [options]) for seed in seeds]
    accuracies, started = {}, time.time()
    with ProcessPoolExecutor(jobs) if jobs > 1 else _InProcess() as pool:
        for done, ((name, _, n, seed, alternative), accuracy) in enumerate(pool.map(run_job, todo), 1):
            accuracies.setdefault((name, n, tuple(alternative)), []).append(accuracy)
            if done % 10 == 0 or done == len(todo):
                print(f"  {done}/{len(todo)} fine-tuning runs done ({time.time() - started:.0f} s)", flush=True)
    for name, _, options in rows:
        alternatives = options if isinstance(options[0], list) else [options]
        for n in label_counts:
            runs = [accuracies[name, n, tuple(alternative)] for alternative in alternatives]
            best = max(range(len(runs)), key=lambda i: np.mean([test for test, _ in runs[i]]))
            results[name][n] = {"test": [t for t, _ in runs[best]], "control": [c for _, c in runs[best]]}
            if len(alternatives) > 1:
                results[name][n]["lr"] = alternatives[best][alternatives[best].index("--lr") + 1]


class _InProcess:
    """ProcessPoolExecutor's map, run here (--jobs 1: easier to step through in a debugger)."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def map(self, fn, items):
        return map(fn, items)


def print_table(results, label_counts, split):
    print(f"\n{split} accuracy, mean [min-max] over seeds"
          + (" (held-out adjectives: only pretraining can help)" if split == "test" else
             " (new reviews with the labelled adjectives)"))
    print(f"{'':40s}" + "".join(f"{f'{n} labels':>20s}" for n in label_counts))
    for name, by_n in results.items():
        print(f"{name:40s}" + "".join(f"{summary(by_n[n][split]) if n in by_n else '':>20s}" for n in label_counts))
        if split == "test" and any("lr" in by_n.get(n, {}) for n in label_counts):
            print(f"{'  (its better learning rate)':40s}" + "".join(f"{by_n[n].get('lr', ''):>20s}" for n in label_counts))


def plot_curves(results, label_counts, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(pip install matplotlib to get the learning-curve plot)")
        return
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, by_n in results.items():
        ns = [n for n in label_counts if n in by_n]
        means = [np.mean(by_n[n]["test"]) for n in ns]
        low = [m - min(by_n[n]["test"]) for m, n in zip(means, ns)]
        high = [max(by_n[n]["test"]) - m for m, n in zip(means, ns)]
        style = "-" if name.startswith("GPT") else "--" if name.startswith("BERT") else ":"
        ax.errorbar(ns, means, yerr=[low, high], marker="o", capsize=3, linestyle=style, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(label_counts, [str(n) for n in label_counts])
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("held-out-adjective test accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"learning curves saved to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 16 and 64 labels, scratch at one learning rate, no default-recipe BERT")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="fine-tuning runs in parallel processes (default %(default)s)")
    args = parser.parse_args()
    started = time.time()
    seeds = (0,) if args.quick else (0, 1, 2)
    label_counts = (16, 64) if args.quick else (16, 64, 256)

    print("== 0. the pretrained models ==")
    ensure_pretrained(GPT_RUN, "pretrain-gpt", GPT_RECIPE, 10)
    ensure_gpt_trained_to_loss(GPT_RUN, GPT_RECIPE)
    ensure_pretrained(BERT_RUN, "pretrain-bert", BERT_TRANSFER_RECIPE, 20)
    bodies = (GPT_RUN, BERT_RUN)
    if not args.quick:
        ensure_pretrained(BERT_DEFAULT_RUN, "pretrain-bert", BERT_DEFAULT_RECIPE, 10)
        bodies += (BERT_DEFAULT_RUN,)
    fine_tuning_started = time.time()

    print("\n== 1. checks that need no label ==")
    loss, zero_shot, gates, clozes = label_free_checks(bodies, seeds)

    print(f"\n== 2. the grid: {', '.join(map(str, label_counts))} labels x {len(seeds)} seed(s) ==")
    results = {"bag of characters": {}}
    for n in label_counts:
        runs = [bag_of_characters_accuracy(n, seed) for seed in seeds]
        results["bag of characters"][n] = {"test": [t for t, _ in runs], "control": [c for _, c in runs]}
    results["GPT, zero-shot (no labels)"] = {n: {"test": zero_shot, "control": [float("nan")]} for n in label_counts}
    if BERT_DEFAULT_RUN in clozes:
        results["BERT, default recipe, zero-shot cloze (no labels)"] = {
            n: {"test": clozes[BERT_DEFAULT_RUN], "control": [float("nan")]} for n in label_counts}
    rows = methods(FINETUNE_STEPS, args.quick)
    results.update({name: {} for name, _, _ in rows})
    run_grid(rows, label_counts, seeds, results, args.jobs)

    print("\n== 3. results ==")
    print_table(results, label_counts, "test")
    print_table({k: v for k, v in results.items() if "zero-shot" not in k}, label_counts, "control")
    stem = "runs/finetune_" + ("quick_" if args.quick else "")
    os.makedirs("runs", exist_ok=True)
    with open(stem + "results.json", "w", encoding="utf-8") as f:
        json.dump({"seeds": seeds, "label_counts": label_counts, "results": results, "gates": gates, "bert_zero_shot_cloze": clozes,
                   "gpt_val_loss": loss, "quick": args.quick}, f, indent=1)
    plot_curves(results, label_counts, stem + "curves.png")
    print(f"\nfine-tuning and evaluation took {(time.time() - fine_tuning_started) / 60:.1f} minutes "
          f"({(time.time() - started) / 60:.1f} in all); results in {stem}results.json")


if __name__ == "__main__":
    main()
