"""Pretrain a small GPT on the built-in Chinese corpus, then see what it learned.

    python demos/pretrain_gpt.py            # about 5 minutes on a 2-core laptop CPU
    python demos/pretrain_gpt.py --quick    # about 1 minute, a weaker model

1. generates the corpus (a seeded "mini world": weather, professions and their tools,
   common sense, 苹果 the fruit and the company, reviews ...) and trains a character-level
   GPT on it with `python -m numpretrain pretrain-gpt` (the same code, called in-process);
2. compares its validation loss with unigram and bigram models of the same text;
3. samples text, and probes the model: the next-character distribution after 「今天天气很」,
   P(雨伞) against P(太阳镜) after 「雨下得很大，所以我带了」, and every probe of the corpus.
The run lands in runs/demo_gpt (weights, config, tokenizer, metrics.jsonl); try
`python -m numpretrain generate --ckpt runs/demo_gpt --prompt 医生拿起了` afterwards.
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpretrain  # noqa: F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np

from numpretrain.app import cli
from numpretrain.app import probing
from numpretrain.data.baselines import bigram_loss, unigram_loss
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.probes import probes
from numpretrain.storage.runs import load_pretrained

FULL = ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "32",
        "--max-iters", "800", "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "100",
        "--eval-interval", "200", "--log-interval", "50", "--n-documents", "40000"]
QUICK = ["--n-layer", "2", "--n-head", "4", "--n-embd", "96", "--block-size", "64", "--batch-size", "32",
         "--max-iters", "300", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-iters", "30",
         "--eval-interval", "100", "--log-interval", "25", "--n-documents", "10000"]


def plot_losses(run_dir):
    """Training and validation loss from metrics.jsonl; a PNG too when matplotlib is installed."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    print("\nvalidation loss (nats/char):", "  ".join(f"{s}: {v:.3f}" for s, v in val))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(pip install matplotlib to get loss_curve.png)")
        return val
    plt.figure(figsize=(6, 4))
    plt.plot(*zip(*train), label="train")
    plt.plot(*zip(*val), "o-", label="validation")
    plt.xlabel("step")
    plt.ylabel("cross-entropy (nats per character)")
    plt.legend()
    plt.tight_layout()
    path = os.path.join(run_dir, "loss_curve.png")
    plt.savefig(path, dpi=100)
    print(f"loss curve saved to {path}")
    return val


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, shorter run (about a minute)")
    parser.add_argument("--out", default="runs/demo_gpt" , help="run directory (default %(default)s)")
    parser.add_argument("--retrain", action="store_true", help="delete --out and train from scratch (otherwise a finished run is reused, an unfinished one resumed)")
    args = parser.parse_args()
    recipe = QUICK if args.quick else FULL
    out = args.out + ("_quick" if args.quick and args.out == "runs/demo_gpt" else "")

    print("== 1. pretraining a GPT on the built-in corpus ==")
    if args.retrain:
        shutil.rmtree(out, ignore_errors=True)
    # --resume where a run exists: a finished run is reused as it is, an interrupted one continues
    resume = ["--resume"] if os.path.exists(os.path.join(out, "config.json")) else []
    status = cli.main(["pretrain-gpt", "--out", out, *recipe, *resume])
    if status:
        sys.exit(status)
    model, tokenizer, _ = load_pretrained(out, expect="gpt")
    val = plot_losses(out)

    print("\n== 2. against n-gram baselines of the same text ==")
    n_documents = int(recipe[recipe.index("--n-documents") + 1])
    ids = np.asarray(tokenizer.encode(corpus_text(generate_documents(n_documents, seed=0))))
    split = int(len(ids) * 0.9)
    unigram = unigram_loss(ids[:split], ids[split:], tokenizer.vocab_size)
    bigram = bigram_loss(ids[:split], ids[split:], tokenizer.vocab_size)
    print(f"unigram {unigram:.3f}  bigram {bigram:.3f}  GPT {val[-1][1]:.3f} nats/char "
          f"(perplexity {math.exp(unigram):.1f} / {math.exp(bigram):.1f} / {math.exp(val[-1][1]):.2f})")

    print("\n== 3. samples ==")
    for i, prompt in enumerate(["今天天气很", "医生拿起了", "我昨天去了"]):
        out_ids = model.generate(np.asarray([tokenizer.encode(prompt)]), 40, temperature=0.8, top_k=20, seed=i)
        print(" ", tokenizer.decode([int(t) for t in out_ids[0]]).replace("\n", " / "))

    print("\n== 4. probes ==")
    print("next character after 今天天气很:",
          "  ".join(f"{t} {p:.2f}" for t, p in probing.next_token_distribution(model, tokenizer, "今天天气很", 6)))
    rain = {a: math.exp(probing.continuation_logprob(model, tokenizer, "雨下得很大，所以我带了", a))
            for a in ("雨伞", "太阳镜")}
    print(f"雨下得很大，所以我带了 -> P(雨伞) = {rain['雨伞']:.3f}, P(太阳镜) = {rain['太阳镜']:.2e}")
    correct = 0
    for p in probes():
        result = probing.score_probe(model, tokenizer, p)
        correct += result["correct"]
        best = max(result["expected"], key=result["expected"].get)
        rival = max(result["contrasting"], key=result["contrasting"].get)
        print(f"  [{'ok' if result['correct'] else '--'}] {p.kind:12s} {p.prompt}{best}  "
              f"(log p {result['expected'][best]:.1f} vs {rival} {result['contrasting'][rival]:.1f})")
    print(f"{correct}/{len(probes())} probes answered correctly")


if __name__ == "__main__":
    main()
