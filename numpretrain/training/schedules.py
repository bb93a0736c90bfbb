"""Learning-rate schedules: pure functions of the step, and `Schedule`, a small config
object that wraps them: `opt.lr = schedule(step)`.

    constant_lr       the same rate at every step
    warmup_cosine_lr  linear warm-up, then half a cosine down to min_lr (GPT's, nanoGPT's)
    warmup_linear_lr  linear warm-up, then a straight line down to min_lr (BERT's)
"""

import math
from dataclasses import dataclass

from numpretrain.errors import ConfigError

# Warmup follows nanoGPT: at step s < warmup_steps the rate is
# max_lr * (s + 1) / (warmup_steps + 1), so the very first step already moves
# (it is never 0) and the ramp reaches max_lr exactly at s = warmup_steps,
# where the decay begins. Decay runs from max_lr at warmup_steps to min_lr at
# total_steps; after total_steps the rate stays at min_lr.

def constant_lr(step, lr):
    """The same rate at every step."""
    return float(lr)


def _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= min_lr <= max_lr:
        raise ConfigError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, "
                          f"total_steps={total_steps}")


def _decay_progress(step, warmup_steps, total_steps):
    """Fraction of the decay phase done at `step` (warmup_steps <= step < total_steps)."""
    return (step - warmup_steps) / (total_steps - warmup_steps)


def warmup_cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    """Linear warmup to max_lr, then half a cosine down to min_lr at total_steps."""
    _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return float(min_lr)
    coeff = 0.5 * (1.0 + math.cos(math.pi * _decay_progress(step, warmup_steps, total_steps)))  # 1 -> 0
    return min_lr + coeff * (max_lr - min_lr)


def warmup_linear_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    """Linear warmup to max_lr, then a straight line down to min_lr at total_steps
    (BERT's schedule, with min_lr = 0)."""
    _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return float(min_lr)
    return max_lr - (max_lr - min_lr) * _decay_progress(step, warmup_steps, total_steps)


SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as configuration: `opt.lr = schedule(step)`.

    "constant" ignores everything but max_lr; "cosine" and "linear" warm up
    for warmup_steps, then decay to min_lr at total_steps (see above).
    """
    name: str = "cosine"       # "constant" | "cosine" | "linear"
    max_lr: float = 1e-3       # peak rate (the rate itself for "constant")
    min_lr: float = 0.0        # floor reached at total_steps (nanoGPT uses max_lr / 10)
    warmup_steps: int = 0      # length of the linear warmup
    total_steps: int = 1000    # step where the decay reaches min_lr

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.name!r}; choose one of {list(SCHEDULES)}")
        if self.name != "constant":
            _check_schedule(0, self.max_lr, self.min_lr, self.warmup_steps, self.total_steps)
        elif not self.max_lr >= 0:
            raise ConfigError(f"learning rate must be >= 0, got {self.max_lr}")

    def __call__(self, step):
        if self.name == "constant":
            return constant_lr(step, self.max_lr)
        schedule = warmup_cosine_lr if self.name == "cosine" else warmup_linear_lr
        return schedule(step, self.max_lr, self.min_lr, self.warmup_steps, self.total_steps)
