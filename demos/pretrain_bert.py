"""Pretrain a small BERT on the built-in corpus (masked LM + next sentence prediction), then probe it.

    python demos/pretrain_bert.py            # 7 to 10 minutes on a 2-core laptop CPU
    python demos/pretrain_bert.py --quick    # about a minute, a weaker model

1. trains with `python -m numpretrain pretrain-bert` (called in-process): 15% of the
   characters chosen (80% [MASK], 10% random, 10% unchanged), and sentence pairs that
   are the true next sentence half of the time, on a corpus of three reviews in four
   documents (demos/bert_recipes.py says why);
2. prints the MLM and NSP loss and accuracy curves (and saves a PNG with matplotlib);
3. fills the source material's example 「我昨天去了[MASK][MASK]大学参观」 and the corpus's
   fill-mask probes, and scores a true and a random sentence pair with the NSP head;
4. with matplotlib, saves an attention heatmap of one head for one sentence.
"""

import argparse
import json
import os
import shutil
import sys
import warnings

import numpretrain  # noqa: F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np

from numpretrain.app import cli
from numpretrain.app import probing
from numpretrain.data.builtin.probes import fill_mask_probes
from numpretrain.storage.runs import load_pretrained

# The textbook objective (15% chosen, 80/10/10, NSP) at lr 2e-3: at 1e-3 the MLM loss stays on its
# plateau for most of the run and the model transfers poorly (demos/bert_recipes.py measures why).
FULL = ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "32",
        "--max-iters", "3000", "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "100",
        "--eval-interval", "250", "--log-interval", "50", "--n-documents", "40000", "--dropout", "0.1"]
QUICK = ["--n-layer", "2", "--n-head", "4", "--n-embd", "96", "--block-size", "64", "--batch-size", "32",
         "--max-iters", "300", "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "30",
         "--eval-interval", "100", "--log-interval", "25", "--n-documents", "10000", "--dropout", "0.1"]


def show_curves(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    val = [r for r in records if "val_loss" in r]
    print("\nstep   val MLM+NSP loss   val MLM acc   val NSP acc")
    for r in val:
        print(f"{r['step']:>4}   {r['val_loss']:>16.3f}   {r.get('val_mlm_acc', float('nan')):>11.3f}"
              f"   {r.get('val_nsp_acc', float('nan')):>11.3f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(pip install matplotlib to get bert_curves.png and the attention heatmap)")
        return None
    train = [r for r in records if "loss" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train MLM + NSP")
    axes[0].plot([r["step"] for r in train], [r.get("mlm_loss", np.nan) for r in train], label="train MLM")
    axes[0].set_xlabel("step"); axes[0].set_ylabel("loss"); axes[0].legend()
    axes[1].plot([r["step"] for r in train], [r["mlm_acc"] for r in train], label="MLM accuracy")
    axes[1].plot([r["step"] for r in train], [r.get("nsp_acc", np.nan) for r in train], label="NSP accuracy")
    axes[1].set_xlabel("step"); axes[1].legend()
    fig.tight_layout()
    path = os.path.join(run_dir, "bert_curves.png")
    fig.savefig(path, dpi=100)
    print(f"curves saved to {path}")
    return plt


def show_fill_mask(model, tokenizer, probe):
    """Fill a fill-mask probe and print it with its first [MASK]'s candidates; True if filled as expected."""
    candidates, filled = probing.fill_mask(model, tokenizer, probe.prompt, top_k=3)
    ok = any(probe.filled(expected) == filled for expected in probe.expected)
    first = next(iter(candidates.values()))
    print(f"  [{'ok' if ok else '--'}] {probe.prompt} -> {filled}   "
          f"(first [MASK]: {', '.join(f'{t} {p:.2f}' for t, p in first)})")
    return ok


def attention_heatmap(plt, model, tokenizer, sentence, run_dir, layer=-1, head=0):
    warnings.filterwarnings("ignore", message="Glyph")   # Chinese labels without a CJK font: boxes, not noise
    ids = np.asarray([probing.encode_masked(tokenizer, sentence)])
    attention = model.bert.layer[layer].attn
    attention.keep_probs = True
    model(ids)
    probs = attention.last_probs[0, head]                           # (T, T)
    attention.keep_probs = False
    tokens = [tokenizer.id_to_token(int(i)) for i in ids[0]]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(probs, cmap="viridis")
    ax.set_xticks(range(len(tokens)), tokens, fontsize=7, rotation=90)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_title(f"layer {len(model.bert.layer) + layer if layer < 0 else layer}, head {head}")
    fig.tight_layout()
    path = os.path.join(run_dir, "attention.png")
    fig.savefig(path, dpi=100)
    print(f"attention heatmap saved to {path} (Chinese labels need a CJK font to show)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, shorter run (about a minute)")
    parser.add_argument("--out", default="runs/demo_bert", help="run directory (default %(default)s)")
    parser.add_argument("--retrain", action="store_true", help="delete --out and train from scratch (otherwise a finished run is reused, an unfinished one resumed)")
    args = parser.parse_args()
    recipe = QUICK if args.quick else FULL
    out = args.out + ("_quick" if args.quick and args.out == "runs/demo_bert" else "")

    print("== 1. pretraining a BERT (MLM + NSP) on the built-in corpus ==")
    if args.retrain:
        shutil.rmtree(out, ignore_errors=True)
    # --resume where a run exists: a finished run is reused as it is, an interrupted one continues
    resume = ["--resume"] if os.path.exists(os.path.join(out, "config.json")) else []
    status = cli.main(["pretrain-bert", "--out", out, *recipe, *resume])
    if status:
        sys.exit(status)
    model, tokenizer, _ = load_pretrained(out, expect="bert")
    plt = show_curves(out)

    print("\n== 2. fill-mask ==")
    correct = sum(show_fill_mask(model, tokenizer, probe) for probe in fill_mask_probes())
    print(f"{correct}/{len(fill_mask_probes())} fill-mask probes filled with an expected answer")
    print('(why a trip to 上海, 南京 or 杭州 does not decide the university: README, "Why no trip finds its university")')

    print("\n== 3. next sentence prediction ==")
    pairs = [("我昨天去了北京大学参观。", "北京大学的校园很大，有很多学生。"),
             ("我昨天去了北京大学参观。", "这家餐厅的米饭十分恶劣。"),
             ("妈妈从水果店买了一些苹果。", "我吃了一个苹果，很甜。"),
             ("妈妈从水果店买了一些苹果。", "赵老师拿起了粉笔，开始在黑板上写字。")]
    for a, b in pairs:
        print(f"  P(B follows A) = {probing.nsp_probability(model, tokenizer, a, b):.3f}   {a} | {b}")

    if plt is not None:
        attention_heatmap(plt, model, tokenizer, "我在上海旅行，昨天去了复旦大学参观。", out)


if __name__ == "__main__":
    main()
