"""What the training loop promises about each step, checked where a one-line bug would break it
(issue 24: each of these bugs once went through the whole suite unnoticed).

- gradient accumulation: N micro-batches make exactly the gradient of the one batch they split
  (each micro-batch's loss divided by N);
- the learning rate: step k (metrics.jsonl's "step": k) runs at the schedule's rate for k - 1,
  metrics.jsonl records that rate, and AdamW's update is made with it;
- evaluation runs without dropout: the validation loss of given weights is one number.
"""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.training.schedules import warmup_cosine_lr
from numpretrain.training.trainer import TrainConfig, Trainer

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--eval-interval", "100", "--eval-iters", "1", "--log-interval", "1", "--seed", "3"]


def tiny_gpt(config=CONFIG, dtype=np.float64):
    return GPT(config, rng=np.random.default_rng(0)).to(dtype)


def lm_loss(model, batch):
    return model(batch[0], batch[1])[1], {}


def batch_of(rows, seed=0):
    """(x, y) token ids (rows, T) drawn from a seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, CONFIG.vocab_size, (rows, CONFIG.block_size)), \
        rng.integers(0, CONFIG.vocab_size, (rows, CONFIG.block_size))


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ----- gradient accumulation -----

def one_step(batch, grad_accum, **train):
    """(loss, {name: gradient}, model) after one Trainer step over `batch`, which the trainer cuts
    into grad_accum micro-batches."""
    x, y = batch

    def get_batch(rng):                                  # the step's whole batch
        return x, y

    model = tiny_gpt()
    config = TrainConfig(**{"max_iters": 1, "batch_size": len(x), "grad_accum": grad_accum,
                            "warmup_iters": 0, "grad_clip": 0.0, **train})      # clipping off
    trainer = Trainer(model, config, get_batch, loss_fn=lm_loss, log=lambda *args: None)
    loss, _, _ = trainer.train_step()
    return loss, {name: p.grad.copy() for name, p in model.named_parameters()}, model


@pytest.mark.parametrize("grad_accum", [2, 4])
def test_accumulated_micro_batches_give_the_whole_batchs_gradient(grad_accum):
    batch = batch_of(8)
    whole_loss, whole, _ = one_step(batch, 1)
    loss, accumulated, _ = one_step(batch, grad_accum)
    assert loss == pytest.approx(whole_loss, rel=1e-12)
    for name in whole:                                   # float64: only the order of the sums differs
        np.testing.assert_allclose(accumulated[name], whole[name], rtol=1e-9, atol=1e-14, err_msg=name)


def test_grad_accum_on_the_command_line_equals_the_whole_batch(tmp_path):
    # --batch-size 4 is the step's batch: --grad-accum 2 cuts the same 4 windows into two
    # micro-batches of 2; --grad-clip 1e9 never clips but records the gradient's norm
    runs = {}
    for batch_size, grad_accum in ((4, 1), (4, 2)):
        out = str(tmp_path / f"accum{grad_accum}")
        assert cli.main(["pretrain-gpt", "--out", out, *TINY, "--max-iters", "1", "--warmup-iters", "0",
                         "--batch-size", str(batch_size), "--grad-accum", str(grad_accum), "--grad-clip", "1e9"]) == 0
        runs[grad_accum] = metrics(out)[0]
    assert runs[2]["loss"] == pytest.approx(runs[1]["loss"], rel=1e-6)
    assert runs[2]["grad_norm"] == pytest.approx(runs[1]["grad_norm"], rel=1e-5)


# ----- the learning rate of each step -----

def test_each_step_records_the_schedules_rate(tmp_path):
    out = str(tmp_path / "run")
    lr, min_lr, warmup, steps = 1e-3, 1e-4, 3, 7
    assert cli.main(["pretrain-gpt", "--out", out, *TINY, "--batch-size", "2", "--max-iters", str(steps),
                     "--warmup-iters", str(warmup), "--lr", str(lr), "--min-lr", str(min_lr)]) == 0
    records = [r for r in metrics(out) if "lr" in r]
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for record in records:        # "step": k is logged after the k-th update, the schedule's step k - 1
        assert record["lr"] == warmup_cosine_lr(record["step"] - 1, lr, min_lr, warmup, steps), record


def test_the_first_update_is_adamw_at_the_first_steps_rate():
    # warm-up makes step 0's rate lr / 4, unlike the peak the optimizer was built with or step 1's
    lr, weight_decay = 1e-2, 0.1
    model_before = tiny_gpt()
    before = {name: p.data.copy() for name, p in model_before.named_parameters()}
    _, gradients, model = one_step(batch_of(4), 1, lr=lr, min_lr=0.0, max_iters=6, warmup_iters=3,
                                   weight_decay=weight_decay)
    rate = warmup_cosine_lr(0, lr, 0.0, 3, 6)
    assert rate == lr / 4
    for name, p in model.named_parameters():
        w, g = before[name], gradients[name]
        decay = weight_decay if w.ndim >= 2 else 0.0         # AdamW decays matrices, not biases or gains
        # AdamW's first step: m_hat = g and v_hat = g^2 (bias-corrected), so the step is g / (|g| + eps)
        expected = w * (1 - rate * decay) - rate * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(p.data, expected, rtol=1e-7, atol=1e-12, err_msg=name)


# ----- evaluation without dropout -----

def test_evaluation_runs_without_dropout():
    model = tiny_gpt(replace(CONFIG, dropout=0.5), np.float32)
    batches = [batch_of(4, seed) for seed in range(3)]
    trainer = Trainer(model, TrainConfig(max_iters=1, warmup_iters=0), get_batch=None, loss_fn=lm_loss,
                      eval_batches=batches, log=lambda *args: None)
    model.train()                                        # where the training loop leaves it
    first, second = trainer.evaluate()["val_loss"], trainer.evaluate()["val_loss"]
    assert first == second
    assert model.training                                # evaluation hands the model back in training mode
    plain = tiny_gpt(replace(CONFIG, dropout=0.0), np.float32)
    plain.load_state_dict(model.state_dict())
    expected = np.mean([float(plain(x, y)[1].data) for x, y in batches])
    assert first == pytest.approx(expected, rel=1e-6)
