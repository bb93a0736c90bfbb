"""The one training loop, shared by GPT and BERT pretraining and by fine-tuning.

Linear, as nanoGPT's: set the learning rate, evaluate now and then, forward, backward,
check for divergence, clip, step, log, checkpoint. Everything random (batches, dropout)
comes from generators whose state is saved in the checkpoint, so `resume=True`
continues exactly where a run stopped: the same seed gives the same losses, bit for
bit, interrupted or not.

A run directory holds:
    config.json              the model config and the training config
    tokenizer.json           written by the caller (the CLI) before training starts
    model.safetensors        the latest weights (what `generate`, `fill-mask` ... load)
    training_state.safetensors  weights + optimizer moments + trainer state in its metadata:
                             one file, renamed into place atomically, so it is always consistent
    metrics.jsonl            one JSON object per logged step and per evaluation

Ctrl-C during `train` raises TrainingInterrupted, which says the step reached and the step of
the last complete checkpoint, the one `resume` continues from.

Under `mpiexec -n N` every rank runs this same loop on its share of each step's batch, and the
ranks' gradients meet in data_parallel.py; rank 0 alone logs and writes the run folder.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, ConfigError, NumpretrainError
from numpretrain.storage.atomic import injected_fault, kill_this_process, remove_stale_temp_files
from numpretrain.storage.formats import (
    load_safetensors,
    load_safetensors_metadata,
    rng_from_json,
    rng_state_to_json,
    save_safetensors,
)
from numpretrain.storage.json_files import check_fields, parse_json
from numpretrain.training import data_parallel, schedules
from numpretrain.training import optimizers as optim
from numpretrain.training.metrics_log import append_record, keep_records_up_to
from numpretrain.training.optimizers import MAX_STEPS

MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.safetensors"
# the trainer state in training_state.safetensors' metadata (json_files.check_fields: "key?" may be absent)
STATE_FIELDS = {"step": int, "skipped_steps?": int, "data_rng": dict, "dropout_rng": dict, "optimizer": dict,
                "train_config?": dict}


class DivergenceError(NumpretrainError):
    """The loss or a gradient stopped being finite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `Trainer.train`: the step it reached and the checkpoint `resume` would take up.

    A KeyboardInterrupt still (whoever stops on Ctrl-C stops on this), whose text the CLI prints.
    """

    def __init__(self, step, saved_step, run_dir):
        super().__init__(step, saved_step, run_dir)
        self.step, self.saved_step, self.run_dir = step, saved_step, run_dir

    def __str__(self):
        if self.run_dir is None:
            return f"interrupted at step {self.step}; this run has no folder, so nothing was saved"
        if self.saved_step is None:
            return (f"interrupted at step {self.step}, before the first checkpoint of {self.run_dir}; "
                    f"--resume starts it again from step 0")
        return (f"interrupted at step {self.step}; the last checkpoint is step {self.saved_step} "
                f"({self.run_dir}); --resume continues from there")


@dataclass
class TrainConfig:
    # Each field is also an option of the commands that train (--max-iters, --batch-size ...):
    # app/cli.py builds them from this class, and the comment beside a field is its --help.
    max_iters: int = 1000        # optimizer steps
    batch_size: int = 32         # sequences, or labelled texts when fine-tuning, per optimizer step,
                                 # cut into equal micro-batches (grad_accum of them, on each rank
                                 # under mpiexec)
    lr: float = 1e-3             # peak learning rate, reached at the end of the warm-up
    min_lr: float = 1e-4         # learning rate at the end of the cosine decay
    warmup_iters: int = 100      # steps of linear warm-up, at most the run's steps; a default longer
                                 # than a short run is shortened to fit it
    weight_decay: float = 0.1    # AdamW decay of 2-D weights; biases and LayerNorms are not decayed
    beta1: float = 0.9           # AdamW's decay rate of the gradient's running mean
    beta2: float = 0.99          # AdamW's decay rate of the squared gradient's running mean
    grad_clip: float = 1.0       # clip the global gradient norm to this; 0 = off
    grad_accum: int = 1          # micro-batches per optimizer step (per rank under mpiexec), run one
                                 # after another, their gradients added up in order
    eval_interval: int = 100     # evaluate the validation loss and save a checkpoint every N steps
    eval_iters: int = 10         # fixed validation batches per evaluation
    log_interval: int = 10       # print a progress line every N steps
    seed: int = 1337             # seed of the batches and dropout; the commands also initialise
                                 # new weights with it
    skip_nonfinite: bool = False  # skip (and count) steps whose loss or gradient is not finite,
                                  # instead of stopping

    def __post_init__(self):
        for field in ("max_iters", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval"):
            if getattr(self, field) <= 0:
                raise ConfigError(f"TrainConfig.{field} must be positive, got {getattr(self, field)}")
        for field in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
            if not math.isfinite(getattr(self, field)):
                raise ConfigError(f"TrainConfig.{field} must be a finite number, got {getattr(self, field)}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}")
        if self.min_lr > self.lr:
            raise ConfigError(f"TrainConfig.min_lr {self.min_lr:g} is above lr {self.lr:g}: the cosine decay would rise")
        for field in ("warmup_iters", "min_lr", "weight_decay", "grad_clip"):
            if getattr(self, field) < 0:
                raise ConfigError(f"TrainConfig.{field} must not be negative, got {getattr(self, field)}")
        for field in ("beta1", "beta2"):
            if not 0 <= getattr(self, field) < 1:
                raise ConfigError(f"TrainConfig.{field} must be in [0, 1), got {getattr(self, field)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"TrainConfig.batch_size={self.batch_size} does not split into TrainConfig.grad_accum="
                              f"{self.grad_accum} equal micro-batches: it must be a multiple of {self.grad_accum}")
        if self.warmup_iters > self.max_iters:
            raise ConfigError(f"TrainConfig.warmup_iters={self.warmup_iters} is more than "
                              f"TrainConfig.max_iters={self.max_iters}: the warm-up must fit in the run")


def _format_seconds(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Trainer:
    """Trains `model` on batches from `get_batch(rng)`, with `loss_fn(model, batch) -> (loss, metrics)`.

    get_batch returns a step's whole batch (a tuple or dict of arrays, rows first), which the
    trainer cuts into micro-batches; metrics is a dict of extra floats to log (e.g. MLM
    accuracy); `eval_batches` is a fixed list of batches for the validation loss;
    `tokens_per_batch` (a step's whole batch) feeds the tokens/s figure.
    """

    def __init__(self, model, config, get_batch, loss_fn, eval_batches=(), run_dir=None,
                 tokens_per_batch=None, log=print, parameters=None):
        self.model, self.config = model, config
        self.get_batch, self.loss_fn = get_batch, loss_fn
        self.eval_batches = list(eval_batches)
        self.run_dir = run_dir
        self.tokens_per_batch = tokens_per_batch
        self.log = log
        named = [(n, p) for n, p in model.named_parameters() if parameters is None or p in parameters]
        self.named_parameters = named
        self.optimizer = optim.AdamW(optim.param_groups_for_decay(named, config.weight_decay),
                                     lr=config.lr, betas=(config.beta1, config.beta2))
        self.data_rng = np.random.default_rng(config.seed)
        self.dropout_rng = np.random.default_rng(config.seed + 1)
        model.set_rng(self.dropout_rng)
        self.micro_batches = data_parallel.micro_batches(config.grad_accum, named)   # where each one runs
        self.writes_files = data_parallel.world().writes_files                       # rank 0 only, under MPI
        self.step = 0
        self.skipped_steps = 0
        self.saved_step = None       # the step of the last complete checkpoint in run_dir
        self.history = []            # (step, loss) of every step run in this process

    # ----- the learning rate -----
    def lr_at(self, step):
        c = self.config
        return schedules.warmup_cosine_lr(step, c.lr, c.min_lr, c.warmup_iters, c.max_iters)

    # ----- evaluation -----
    def evaluate(self):
        """Mean loss (and metrics) over the fixed validation batches, in eval mode, without a graph."""
        if not self.eval_batches:
            return {}
        self.model.eval()
        count, results = len(self.eval_batches), {}
        with no_grad():
            for i in self.micro_batches.eval_share(count):      # all of them, but for a share under MPI
                loss, metrics = self.loss_fn(self.model, self.eval_batches[i])
                results[i] = {"loss": float(loss.data), **metrics}
        self.model.train()
        totals = {}
        for result in self.micro_batches.gather(results, count):     # every batch's, in order
            for key, value in result.items():
                totals[key] = totals.get(key, 0.0) + value
        return {f"val_{key}": value / len(self.eval_batches) for key, value in totals.items()}

    # ----- one optimizer step -----
    def train_step(self):
        c = self.config
        if injected_fault("kill-at-step") == self.step:     # a rank dying mid-run (tests/test_data_parallel.py)
            kill_this_process()
        lr = self.lr_at(self.step)
        self.optimizer.set_lr(lr)
        self.optimizer.zero_grad()
        batch = self.get_batch(self.data_rng)        # the step's whole batch, the same on every rank
        split, results = self.micro_batches, {}
        for k in split.mine:                          # every micro-batch, or this rank's share of them
            if split.count > 1:
                self.model.set_rng(self.micro_batch_rng(k))
            loss, metrics = self.loss_fn(self.model, split.rows(batch, k))
            (loss * (1.0 / split.count)).backward()   # adds into .grad (MPI: kept in micro-batch k's row)
            split.keep_gradients(k)
            results[k] = {"loss": float(loss.data), **metrics}
        split.sum_gradients()                         # .grad: every micro-batch's, added in order k = 0, 1 ...
        loss_total, metric_totals = 0.0, {}
        for result in split.gather(results, split.count):
            loss_total += result.pop("loss") / split.count
            for key, value in result.items():
                metric_totals[key] = metric_totals.get(key, 0.0) + value / split.count
        if injected_fault("nan-grad") == self.step:    # the crash tests' fault hook (atomic.py)
            [p for _, p in self.named_parameters if p.grad is not None][-1].grad[...] = np.nan
        problem = self._nonfinite(loss_total, loss)
        if problem:
            if not c.skip_nonfinite:
                raise DivergenceError(f"step {self.step}: {problem}; training stopped "
                                      f"(the last good checkpoint is kept; --skip-nonfinite skips such steps)")
            self.skipped_steps += 1
            self.log(f"step {self.step}: {problem}; step skipped ({self.skipped_steps} so far)")
            self.optimizer.zero_grad()
            return loss_total, {"skipped": 1.0, **metric_totals}, lr
        grad_norm = optim.clip_grad_norm([p for _, p in self.named_parameters], c.grad_clip) \
            if c.grad_clip > 0 else float("nan")
        self.optimizer.step()
        return loss_total, {"grad_norm": float(grad_norm), **metric_totals}, lr

    def micro_batch_rng(self, k):
        """The generator micro-batch k of this step draws its dropout masks from, when a step has
        several: a child of the dropout seed named by (step, k), so that whichever rank runs it,
        and one process with --grad-accum, draw the same masks. (A step of one micro-batch draws
        from the run's dropout stream, `dropout_rng`, as runs always have.)"""
        return np.random.default_rng(np.random.SeedSequence(self.config.seed + 1, spawn_key=(self.step, k)))

    def _nonfinite(self, loss_value, loss):
        """None if all is finite, else a sentence naming where the first non-finite value appeared."""
        if not math.isfinite(loss_value):
            return f"the loss is {loss_value}, {first_nonfinite(loss, dict(self.model.named_parameters()))}"
        for name, p in self.named_parameters:
            if p.grad is not None and not np.isfinite(p.grad).all():
                return f"the gradient of {name} is not finite"
        return None

    # ----- the loop -----
    def train(self):
        """Run until max_iters, logging, evaluating and checkpointing along the way.

        Ctrl-C becomes TrainingInterrupted, which knows the last complete checkpoint.
        """
        try:
            return self._train()
        except KeyboardInterrupt as interrupt:
            raise TrainingInterrupted(self.step, self.saved_step, self.run_dir) from interrupt

    def _train(self):
        c = self.config
        self.model.train()
        if data_parallel.world().size > 1:
            self.log(str(self.micro_batches))
        start_step, started = self.step, time.time()
        window_start, window_tokens = time.time(), 0
        while self.step < c.max_iters:
            if self.step % c.eval_interval == 0 and self.step > start_step:
                self._evaluate_and_save()
            loss, metrics, lr = self.train_step()
            self.history.append((self.step, loss))
            self.step += 1
            window_tokens += self.tokens_per_batch or 0      # the whole batch: every rank's share
            # Which steps reach metrics.jsonl depends on the step alone, so a resumed run logs
            # the same records as an uninterrupted one; the first step after a resume is printed too.
            logged = self.step % c.log_interval == 0 or self.step in (1, c.max_iters)
            if logged or self.step == start_step + 1:
                now = time.time()
                tokens_per_second = window_tokens / max(now - window_start, 1e-9)
                elapsed = now - started
                remaining = elapsed / (self.step - start_step) * (c.max_iters - self.step)
                extra = "".join(f" | {k} {v:.3f}" for k, v in metrics.items() if k != "grad_norm")
                self.log(f"step {self.step:>5}/{c.max_iters} | loss {loss:.4f}{extra} | lr {lr:.2e} | "
                         f"{tokens_per_second:,.0f} tok/s | elapsed {_format_seconds(elapsed)} | "
                         f"eta {_format_seconds(remaining)}")
                if logged:
                    self._write_metrics({"step": self.step, "loss": loss, "lr": lr,
                                         "tokens_per_sec": tokens_per_second, "elapsed": elapsed, **metrics})
                window_start, window_tokens = now, 0
        if self.step > start_step:   # resuming a finished run evaluates and saves nothing twice
            self._evaluate_and_save()
        if self.skipped_steps:
            self.log(f"{self.skipped_steps} step(s) skipped because their loss or gradient was not finite")
        return self.history

    def _evaluate_and_save(self):
        results = self.evaluate()
        if results:
            self.log(f"step {self.step:>5}: " + " | ".join(f"{k} {v:.4f}" for k, v in results.items()))
            self._write_metrics({"step": self.step, **results})
        self.save()
        return results

    # ----- metrics log -----
    def _write_metrics(self, record):
        if self.run_dir is not None and self.writes_files:
            append_record(self.run_dir, record)

    # ----- checkpoints -----
    def save(self):
        """Write the weights, then the full training state, each atomically (temp file + rename)."""
        if self.run_dir is None:
            return
        if not self.writes_files:     # another rank than 0: the same state is rank 0's to save
            self.saved_step = self.step
            return
        weights = self.model.state_dict()
        optimizer_arrays, optimizer_info = _split_arrays(self.optimizer.state_dict())
        state = {"step": self.step, "skipped_steps": self.skipped_steps,
                 "data_rng": rng_state_to_json(self.data_rng), "dropout_rng": rng_state_to_json(self.dropout_rng),
                 "train_config": asdict(self.config), "optimizer": optimizer_info}
        tensors = {f"model.{k}": v for k, v in weights.items()}
        tensors.update({f"optimizer.{k}": v for k, v in optimizer_arrays.items()})
        try:
            save_safetensors(os.path.join(self.run_dir, MODEL_FILE), weights, metadata={"step": str(self.step)})
            save_safetensors(os.path.join(self.run_dir, STATE_FILE), tensors,
                             metadata={"trainer_state": json.dumps(state)})
        except CheckpointError as error:   # a full disk, a permission denied: say what is kept
            kept = "none yet" if self.saved_step is None else f"step {self.saved_step}, continue it with --resume"
            raise CheckpointError(f"the checkpoint of step {self.step} was not saved: {error}. "
                                  f"The last complete checkpoint is kept ({kept}).") from error
        self.saved_step = self.step

    def resume(self):
        """Load the training state from run_dir; returns False when there is none yet."""
        path = os.path.join(self.run_dir, STATE_FILE)
        for name in remove_stale_temp_files(self.run_dir) if self.writes_files else ():
            self.log(f"removed {name}, left half-written by an interrupted save")
        if not os.path.exists(path):
            if self.writes_files:
                keep_records_up_to(self.run_dir, None, self.log)   # killed before the first checkpoint: start over
            return False
        state = read_trainer_state(path)
        tensors = load_safetensors(path)
        step, skipped = state["step"], state.get("skipped_steps", 0)
        try:
            data_rng = rng_from_json(state["data_rng"], "data_rng")
            dropout_rng = rng_from_json(state["dropout_rng"], "dropout_rng")
            optimizer_info = state["optimizer"]
            if not isinstance(optimizer_info, dict):
                raise ValueError("the optimizer entry is not an object")
            self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_arrays = {k[len("optimizer."):]: v for k, v in tensors.items() if k.startswith("optimizer.")}
            self.optimizer.load_state_dict(_join_arrays(optimizer_arrays, optimizer_info))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            # CheckpointError is a ValueError: the model's and optimizer's checks land here too
            raise CheckpointError(f"{path}: the training state does not fit this run: {error}") from None
        self.step, self.skipped_steps = step, skipped
        self.data_rng.bit_generator.state = data_rng.bit_generator.state
        self.dropout_rng.bit_generator.state = dropout_rng.bit_generator.state
        self.saved_step = self.step
        if self.writes_files:
            keep_records_up_to(self.run_dir, self.step, self.log)   # later records will be logged again
        return True


def read_trainer_state(path):
    """The trainer state (step, RNG states, optimizer entries) in a training state file's metadata,
    its step and skipped-step count checked; read from the header alone, without the tensors."""
    metadata = load_safetensors_metadata(path)
    if "trainer_state" not in metadata:
        raise CheckpointError(f"{path}: no trainer state in its metadata (not a training state file)")
    state = parse_json(metadata["trainer_state"], f"{path}: trainer state")
    check_fields(state, STATE_FIELDS, f"{path}: trainer state")
    state.setdefault("skipped_steps", 0)         # absent in older files
    step, skipped = state["step"], state["skipped_steps"]
    if not (0 <= step <= MAX_STEPS and 0 <= skipped <= step):
        raise CheckpointError(f"{path}: the training state does not fit this run: step {step} and "
                              f"skipped_steps {skipped} must be counts, skipped_steps <= step <= {MAX_STEPS}")
    return state


def checkpoint_step(run_dir):
    """The step of the last complete checkpoint in run_dir (what `resume` continues from); None if none yet."""
    path = os.path.join(run_dir, STATE_FILE)
    return read_trainer_state(path)["step"] if os.path.exists(path) else None


def first_nonfinite(output, parameter_names):
    """Where in the graph behind `output` a non-finite value first appears: a parameter or an op."""
    names = {id(p): name for name, p in parameter_names.items()}
    for node in output._topological_order():           # inputs before the ops that use them
        if not np.isfinite(node.data).all():
            if id(node) in names:
                return f"first non-finite in parameter {names[id(node)]}"
            return f"first non-finite in the output of op {node.op}" + (f" ({node.name})" if node.name else "")
    return "no non-finite value found in the graph"


def _split_arrays(state, prefix=""):
    """Separate a nested state dict into {dotted name: ndarray} and the JSON-able rest."""
    arrays, rest = {}, {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, dict):
            sub_arrays, sub_rest = _split_arrays(value, f"{name}.")
            arrays.update(sub_arrays)
            rest[key] = sub_rest
        else:
            rest[key] = value
    return arrays, rest


def _join_arrays(arrays, rest, prefix=""):
    """The inverse of _split_arrays."""
    state = {}
    for key, value in rest.items():
        state[key] = _join_arrays(arrays, value, f"{prefix}{key}.") if isinstance(value, dict) else value
    for name, array in arrays.items():
        if name.startswith(prefix) and "." not in name[len(prefix):]:
            state[name[len(prefix):]] = array
    return state
