"""Does numpretrain train a character-level GPT on English as well as PyTorch does with the same recipe?

    python benchmarks/charlm_parity.py [--threads N] [--peer sdpa|twin] [--max-iters N]
    python benchmarks/charlm_parity.py --no-torch   # numpretrain alone

nanoGPT's CPU recipe for a char-level model (its shakespeare_char config on a laptop):
4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, no biases in the Linear layers
(bias=False; the LayerNorms keep their shift, as numpretrain's do), AdamW betas (0.9, 0.99),
weight decay 0.1 on 2-D weights, lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4,
gradient clipping at 1.0, dropout 0.

The PyTorch side is the peer a speed-minded user writes (benchmarks/torch_sdpa_models.py:
F.scaled_dot_product_attention, nn.LayerNorm, F.gelu, AdamW(foreach=True)); --peer twin runs the
hand-spelled twin instead. --threads N (default 2) sets both sides' threads before NumPy loads.
The wall time of each whole run, evaluation included, is printed with tokens per second.

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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-torch", action="store_true", help="train numpretrain only")
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--peer", choices=["sdpa", "twin"], default="sdpa", help="the PyTorch model (default sdpa)")
    return parser.parse_args(argv)


ARGS = parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)   # before NumPy (and torch) start their thread pools

import numpretrain  # noqa: E402, F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np  # noqa: E402

from numpretrain.data import CausalLMDataset  # noqa: E402
from numpretrain.models.gpt import GPT, GPTConfig  # noqa: E402
from numpretrain.tokenizers import CharTokenizer  # noqa: E402
from numpretrain.training import schedules  # noqa: E402
from numpretrain.training.trainer import TrainConfig, Trainer  # noqa: E402

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


def torch_run(model_np, dataset, eval_batches, recipe, peer):
    """The same training in PyTorch (the SDPA peer or the twin), same weights and batches."""
    import torch
    sys.path.insert(0, os.path.dirname(__file__))
    import torch_models
    import torch_sdpa_models
    module = torch_sdpa_models if peer == "sdpa" else torch_models
    c = model_np.config
    model = module.GPT(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, bias=c.bias)
    torch_models.copy_weights(model_np, model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(recipe.beta1, recipe.beta2), foreach=peer == "sdpa" or None)
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
    args = ARGS
    recipe = TrainConfig(**{**vars(RECIPE), "max_iters": args.max_iters,
                            "warmup_iters": min(RECIPE.warmup_iters, args.max_iters)})

    text = english_text()
    tokenizer = CharTokenizer.train(text)
    dataset = CausalLMDataset(np.asarray(tokenizer.encode(text), dtype=np.int64), source="English text")
    print(f"text: {len(text):,} characters, vocabulary {tokenizer.vocab_size}; "
          f"{len(dataset.train_tokens):,} train / {len(dataset.val_tokens):,} val tokens")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
                       bias=False)
    model = GPT(config, rng=np.random.default_rng(recipe.seed))
    eval_batches = dataset.fixed_validation_batches(recipe.eval_iters, recipe.batch_size, config.block_size, seed=0)

    torch_curve = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
            start = time.perf_counter()
            torch_curve = torch_run(model, dataset, eval_batches, recipe, args.peer)
            torch_seconds = time.perf_counter() - start
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
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = recipe.max_iters * recipe.batch_size * config.block_size
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import describe
    print(f"\n{describe(sys.modules.get('torch'))}")
    print(f"wall time, evaluation included, {args.threads} thread(s), load average now {os.getloadavg()[0]:.2f}:")
    print(f"  numpretrain {seconds:6.1f} s ({tokens / seconds:,.0f} tokens/s)")
    if torch_curve:
        print(f"  PyTorch     {torch_seconds:6.1f} s ({tokens / torch_seconds:,.0f} tokens/s), {args.peer} peer; "
              f"speed {torch_seconds / seconds:.2f}x (above 1: numpretrain is faster)")

    print("\nvalidation loss (nats/char)\n  step   numpretrain   PyTorch")
    theirs = dict(torch_curve or [])
    for step, value in ours:
        print(f"  {step:>4}   {value:>11.4f}   {theirs.get(step, float('nan')):>7.4f}")
    if torch_curve:
        print(f"final gap numpretrain - PyTorch: {ours[-1][1] - torch_curve[-1][1]:+.4f} nats/char")


if __name__ == "__main__":
    main()
