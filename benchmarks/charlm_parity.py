"""Does numpretrain train a character-level GPT on English as well as PyTorch does with the same recipe?

    python benchmarks/charlm_parity.py              # both, about 5-10 minutes on 2 cores
    python benchmarks/charlm_parity.py --no-torch   # numpretrain alone

The recipe a practitioner would use for a char-level model (nanoGPT's shakespeare_char style):
4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, AdamW betas (0.9, 0.99),
weight decay 0.1 on 2-D weights, lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4,
gradient clipping at 1.0, dropout 0.

The text: about 1 MB of English prose that ships with Python itself (the language reference
topics of `pydoc_data` and the docstrings of the standard library), so nothing is downloaded.
Both models start from the same weights (copied by name), see the same batches in the same
order, and are evaluated on the same fixed validation batches; the script prints both
validation curves and the final gap.
"""

import argparse
import importlib
import inspect
import os
import sys
import time
import warnings

import numpretrain  # noqa: F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np

from numpretrain.data import CausalLMDataset
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.tokenizers import CharTokenizer
from numpretrain.training import schedules
from numpretrain.training.trainer import TrainConfig, Trainer

RECIPE = TrainConfig(max_iters=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.1,
                     beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=20, log_interval=250,
                     seed=1337)
TARGET_CHARS = 1_000_000


def english_text(target=TARGET_CHARS):
    """~1 MB of English from Python's own documentation, in a fixed order."""
    from pydoc_data.topics import topics
    parts = [topics[key] for key in sorted(topics)]
    size = sum(map(len, parts))
    warnings.simplefilter("ignore")
    for name in sorted(sys.stdlib_module_names):
        if size >= target or name.startswith("_") or name in ("antigravity", "this", "idlelib", "tkinter", "turtle"):
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - some stdlib modules do not import on every platform
            continue
        for _, member in sorted(vars(module).items()):
            doc = inspect.getdoc(member) if callable(member) or inspect.ismodule(member) else None
            if doc and len(doc) > 200 and doc.isascii():
                parts.append(doc)
                size += len(doc)
    return "\n\n".join(parts)[:target]


def torch_run(model_np, dataset, eval_batches, recipe):
    """The same training in PyTorch (benchmarks/torch_models.py's GPT), same weights and batches."""
    import torch
    sys.path.insert(0, os.path.dirname(__file__))
    from torch_models import GPT as TorchGPT, copy_weights
    c = model_np.config
    model = TorchGPT(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd)
    copy_weights(model_np, model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(recipe.beta1, recipe.beta2))
    rng = np.random.default_rng(recipe.seed)                     # the trainer's batch generator, replayed
    as_torch = lambda *arrays: [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    curve = []

    def evaluate():
        model.eval()
        with torch.no_grad():
            return float(np.mean([model(*as_torch(x, y)).item() for x, y in eval_batches]))

    for step in range(recipe.max_iters):
        if step % recipe.eval_interval == 0 and step:
            curve.append((step, evaluate()))
            model.train()
        lr = schedules.warmup_cosine_lr(step, recipe.lr, recipe.min_lr, recipe.warmup_iters, recipe.max_iters)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = dataset.get_batch(rng, recipe.batch_size, c.block_size)
        loss = model(*as_torch(x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
    curve.append((recipe.max_iters, evaluate()))
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-torch", action="store_true", help="train numpretrain only")
    parser.add_argument("--max-iters", type=int, default=RECIPE.max_iters)
    args = parser.parse_args()
    recipe = TrainConfig(**{**vars(RECIPE), "max_iters": args.max_iters,
                            "warmup_iters": min(RECIPE.warmup_iters, args.max_iters)})

    text = english_text()
    tokenizer = CharTokenizer.train(text)
    dataset = CausalLMDataset(np.asarray(tokenizer.encode(text), dtype=np.int64), source="English text")
    print(f"text: {len(text):,} characters, vocabulary {tokenizer.vocab_size}; "
          f"{len(dataset.train_tokens):,} train / {len(dataset.val_tokens):,} val tokens")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config, rng=np.random.default_rng(recipe.seed))
    eval_batches = dataset.fixed_validation_batches(recipe.eval_iters, recipe.batch_size, config.block_size, seed=0)

    torch_curve = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
            start = time.time()
            torch_curve = torch_run(model, dataset, eval_batches, recipe)
            print(f"PyTorch: {time.time() - start:.0f} s")
        except ImportError:
            print("PyTorch is not installed (pip install torch==2.13.0): numpretrain alone")

    trainer = Trainer(model, recipe, get_batch=lambda rng: dataset.get_batch(rng, recipe.batch_size, config.block_size),
                      loss_fn=lambda m, b: (m(b[0], b[1])[1], {}), eval_batches=eval_batches,
                      tokens_per_batch=recipe.batch_size * config.block_size, log=lambda line: None)
    ours, evaluate = [], trainer.evaluate

    def recording_evaluate():
        results = evaluate()
        ours.append((trainer.step, results["val_loss"]))
        return results
    trainer.evaluate = recording_evaluate
    start = time.time()
    trainer.train()
    print(f"numpretrain: {time.time() - start:.0f} s")

    print("\nvalidation loss (nats/char)\n  step   numpretrain   PyTorch")
    theirs = dict(torch_curve or [])
    for step, value in ours:
        print(f"  {step:>4}   {value:>11.4f}   {theirs.get(step, float('nan')):>7.4f}")
    if torch_curve:
        print(f"final gap numpretrain - PyTorch: {ours[-1][1] - torch_curve[-1][1]:+.4f} nats/char")


if __name__ == "__main__":
    main()
