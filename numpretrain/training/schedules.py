"""The learning-rate schedule: a pure function of the step, `opt.lr = warmup_cosine_lr(step, ...)`.

    warmup_cosine_lr  linear warm-up, then half a cosine down to min_lr (GPT's, nanoGPT's)
"""

import math

from numpretrain.errors import ConfigError

# Warmup follows nanoGPT: at step s < warmup_steps the rate is
# max_lr * (s + 1) / (warmup_steps + 1), so the very first step already moves
# (it is never 0) and the ramp reaches max_lr exactly at s = warmup_steps,
# where the decay begins. Decay runs from max_lr at warmup_steps to min_lr at
# total_steps; after total_steps the rate stays at min_lr.


def _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= min_lr <= max_lr:
        raise ConfigError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, "
                          f"total_steps={total_steps}")


def warmup_cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    """Linear warmup to max_lr, then half a cosine down to min_lr at total_steps."""
    _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)   # share of the decay done, 0 -> 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))                 # 1 -> 0
    return min_lr + coeff * (max_lr - min_lr)
