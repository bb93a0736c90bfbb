"""AdamW, gradient clipping, and nanoGPT's two parameter groups.

    adamw_update      one AdamW step of one parameter: the formula, line by line
    AdamW             the optimizer: parameter groups, moments, step counts, state_dict
    clip_grad_norm    scale all gradients together so their global L2 norm is at most max_norm
    param_groups_for_decay   2-D weights decay, biases and LayerNorm parameters do not

Conventions:
- `p.data` is updated in place (models share these arrays, e.g. tied weights);
  `p.grad` is only read, never written (a gradient array may be shared).
- A parameter whose grad is None is skipped entirely: no decay, no moment
  update, and its own step count (Adam's bias correction) does not advance.
- Hyper-parameters live in `opt.param_groups`, a list of dicts read afresh at
  every step, so `opt.lr = x` (every group) or `group["lr"] = x` takes effect
  at the next `step()`.
- `state_dict()` is plain data: `state["buffers"]` maps names such as
  "exp_avg[3]" (parameter index 3) to ndarrays, ready for safetensors, and every
  other entry is JSON-able. `load_state_dict` checks it all before changing
  anything, so resuming continues bit-identically.
"""

import math

import numpy as np

from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.speed import kernels, threads

# clip_grad_norm divides by (norm + CLIP_EPS), as PyTorch's clip_grad_norm_ does.
CLIP_EPS = 1e-6
# The most steps a saved state may claim: counts stay exact as floats (2**53), so the bias
# corrections 1 - beta**t never overflow or divide by zero.
MAX_STEPS = 2**53


def adamw_update(param, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """One AdamW step of one parameter (Loshchilov & Hutter, as PyTorch's AdamW), in place on
    param, m and v; t counts the updates this parameter has received, this one included."""
    m *= beta1
    m += (1 - beta1) * grad                           # m = b1 m + (1 - b1) g
    v *= beta2
    v += (1 - beta2) * (grad * grad)                  # v = b2 v + (1 - b2) g^2
    step_size = lr / (1 - beta1 ** t)                 # lr / (1 - b1^t): m_hat = m / (1 - b1^t)
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps   # sqrt(v_hat) + eps, v_hat = v / (1 - b2^t)
    param *= 1 - lr * weight_decay                    # decoupled weight decay, before the step
    param -= m / denom * step_size                    # p -= lr * m_hat / (sqrt(v_hat) + eps)


class AdamW:
    """Adam with decoupled weight decay over parameter groups (`param_groups_for_decay` builds
    nanoGPT's two). Each parameter has its own moments `exp_avg` (m) and `exp_avg_sq` (v), shaped
    like it, and its own step count.

    The moments of a group's parameters of one dtype are views into one flat array each, as llm.c
    keeps all of its parameters' moments: when every one of them has a gradient and the same step
    count (the usual case), the update runs over the flat arrays in a few large NumPy calls
    instead of a dozen small ones per parameter (speed/kernels.py, the same bits as
    `adamw_update`; 0.4 ms a step instead of 0.7 for the tiny BERT of benchmarks/bench.py).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        self.defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        self.param_groups = [self._make_group(g) for g in _as_groups(params)]
        self._params = [p for g in self.param_groups for p in g["params"]]
        if not self._params:
            raise ConfigError("the optimizer got no parameters")
        _check_distinct(self._params)
        # Global indices, in group order: the keys of the state_dict.
        # (`_indices` is bookkeeping inside each group dict, not an option.)
        index = 0
        for group in self.param_groups:
            group["_indices"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
        self.moments = {"exp_avg": [None] * index, "exp_avg_sq": [None] * index}   # views, parameter by parameter
        self._flat_moments = []                        # (group, indices, flat m, flat v) per group and dtype
        for group in self.param_groups:
            for dtype in dict.fromkeys(p.data.dtype for p in group["params"]):
                indices = [i for i in group["_indices"] if self._params[i].data.dtype == dtype]
                flat = {name: np.zeros(sum(self._params[i].data.size for i in indices), dtype) for name in self.moments}
                for name, array in flat.items():
                    for i, view in zip(indices, _split(array, [self._params[i].data.shape for i in indices])):
                        self.moments[name][i] = view
                self._flat_moments.append((group, indices, flat["exp_avg"], flat["exp_avg_sq"]))
        self.step_count = 0                            # calls to step()
        self.param_steps = [0] * index                 # updates each parameter received

    def step(self):
        """One AdamW update of every parameter that has a gradient."""
        self.step_count += 1
        for group, indices, flat_m, flat_v in self._flat_moments:
            updated = [i for i in indices if self._params[i].grad is not None]
            for i in updated:
                p = self._params[i]
                if p.grad.shape != p.data.shape:
                    raise ValueError(f"parameter {i} ({group['param_names'][group['_indices'].index(i)]!r}) has "
                                     f"shape {p.data.shape} but its grad has shape {p.grad.shape}")
                self.param_steps[i] += 1
            hyper = dict(lr=float(group["lr"]), beta1=float(group["betas"][0]), beta2=float(group["betas"][1]),
                         eps=float(group["eps"]), weight_decay=float(group["weight_decay"]))
            steps = {self.param_steps[i] for i in updated}
            if len(updated) == len(indices) and len(steps) == 1 and not threads.debugger_attached():
                params = [self._params[i] for i in indices]
                kernels.adamw_update_flat([p.data for p in params], [p.grad for p in params], flat_m, flat_v,
                                          steps.pop(), **hyper)
                continue
            for i in updated:                          # the formula, parameter by parameter
                p = self._params[i]
                adamw_update(p.data, p.grad, self.moments["exp_avg"][i], self.moments["exp_avg_sq"][i],
                             self.param_steps[i], **hyper)

    def _make_group(self, group):
        unknown = set(group) - set(self.defaults) - {"params", "param_names", "_indices"}
        if unknown:
            raise ConfigError(f"unknown parameter-group option(s) {sorted(unknown)}; "
                              f"{type(self).__name__} knows {sorted(self.defaults)}")
        params = list(group["params"])
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer parameters must be Tensors, got {type(p).__name__}")
            if p.data.dtype.kind != "f":
                raise TypeError(f"parameter {p.name!r} has dtype {p.data.dtype}; only float tensors can be optimized")
        names = group.get("param_names", [p.name for p in params])
        if len(names) != len(params):
            raise ConfigError(f"a parameter group has {len(params)} params but {len(names)} param_names")
        full = {**self.defaults, **group, "params": params, "param_names": list(names)}
        self._check_hyperparameters(full)
        return full

    def _check_hyperparameters(self, group):
        """Raise ConfigError for a value that cannot work."""
        if not 0 <= group["lr"] < math.inf:
            raise ConfigError(f"learning rate must be >= 0 and finite, got {group['lr']}")
        weight_decay, lr = group["weight_decay"], group["lr"]
        if not (0 <= weight_decay < math.inf and weight_decay * lr <= 1):   # a step removes at most the weight
            raise ConfigError(f"weight_decay must be >= 0, finite and at most 1 / lr, got {weight_decay} "
                              f"with a learning rate of {lr}")
        betas = group["betas"]
        if isinstance(betas, (str, dict)) or len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas}")
        if not 0 <= group["eps"] <= 1:       # it only keeps the denominator off zero
            raise ConfigError(f"eps must be in [0, 1], got {group['eps']}")

    # ----- the learning rate -----
    def set_lr(self, lr):
        """Set the learning rate of every group; the same as `opt.lr = lr`."""
        self.lr = lr

    @property
    def lr(self):
        """The first group's learning rate (they are usually all the same)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        """Set the learning rate of every group (the trainer does this each step)."""
        if not value >= 0:
            raise ConfigError(f"learning rate must be >= 0, got {value}")
        for group in self.param_groups:
            group["lr"] = float(value)

    # ----- gradients -----
    def zero_grad(self):
        """Forget every parameter's gradient (set it to None)."""
        for p in self._params:
            p.grad = None

    # ----- saving and resuming -----
    def _hyperparameters(self, group):
        """A group's hyper-parameters as JSON values (betas become a list)."""
        return {key: _json_number(group[key]) for key in self.defaults}

    def _buffer_shapes(self):
        """{"exp_avg[3]": shape, ...}: every state array, keyed by name and parameter index."""
        return {f"{name}[{i}]": p.data.shape for name in self.moments for i, p in enumerate(self._params)}

    def state_dict(self):
        """Everything needed to resume: `buffers` (name -> ndarray copy, for
        safetensors) and JSON-able values (step counts, hyper-parameters,
        parameter names and shapes, which parameters form each group)."""
        buffers = {f"{name}[{i}]": moment.copy()
                   for name, moments in self.moments.items() for i, moment in enumerate(moments)}
        return {
            "optimizer": type(self).__name__,
            "step_count": self.step_count,
            "param_steps": list(self.param_steps),
            "param_names": self._param_names(),
            "param_shapes": [list(p.data.shape) for p in self._params],
            "param_groups": [{**self._hyperparameters(g), "params": list(g["_indices"])}
                             for g in self.param_groups],
            "buffers": buffers,
        }

    def load_state_dict(self, state):
        """Restore a `state_dict()`, exactly. Everything is checked first and
        a CheckpointError lists every mismatch; on error nothing has changed."""
        problems = self._check_state(state)
        if problems:
            raise CheckpointError(f"cannot load {type(self).__name__} state:\n  " + "\n  ".join(problems))
        for group, saved in zip(self.param_groups, state["param_groups"]):
            for key in self.defaults:
                value = saved[key]
                group[key] = tuple(value) if isinstance(value, list) else value
        self.step_count = int(state["step_count"])
        self.param_steps = [int(s) for s in state["param_steps"]]
        for name, moments in self.moments.items():
            for i, moment in enumerate(moments):
                np.copyto(moment, state["buffers"][f"{name}[{i}]"])

    def _check_state(self, state):
        """Every reason `state` cannot be loaded into this optimizer, as strings."""
        required = ("optimizer", "step_count", "param_steps", "param_names",
                    "param_shapes", "param_groups", "buffers")
        if not isinstance(state, dict):
            return [f"expected a dict, got {type(state).__name__}"]
        missing = [key for key in required if key not in state]
        if missing:
            return [f"missing entries {missing}"]
        if state["optimizer"] != type(self).__name__:
            return [f"the state is from {state['optimizer']}, not {type(self).__name__}"]
        problems = []
        n = len(self._params)
        if len(state["param_shapes"]) != n:
            return [f"the state has {len(state['param_shapes'])} parameters, this optimizer has {n}"]
        if len(state["param_steps"]) != n or len(state["param_names"]) != n:
            return ["param_steps and param_names must have one entry per parameter"]
        step_count = state["step_count"]
        if not (_is_count(step_count) and all(_is_count(s) and s <= step_count for s in state["param_steps"])):
            return [f"step_count and param_steps must be integers in [0, {MAX_STEPS}], no parameter "
                    f"updated more often than the optimizer stepped"]
        if not all(isinstance(g, dict) and "params" in g for g in state["param_groups"]):
            return ["every entry of param_groups must be a dict with a 'params' list"]
        saved_groups = [g["params"] for g in state["param_groups"]]
        current_groups = [g["_indices"] for g in self.param_groups]
        if saved_groups != current_groups:
            return [f"parameter groups differ: the state groups parameters as {_ranges(saved_groups)}, "
                    f"this optimizer as {_ranges(current_groups)}"]
        names = self._param_names()
        for i, (p, saved_shape) in enumerate(zip(self._params, state["param_shapes"])):
            name = names[i]
            if tuple(saved_shape) != p.data.shape:
                problems.append(f"parameter {i} ({name!r}): shape {tuple(saved_shape)} in the state, "
                                f"{p.data.shape} here")
            saved_name = state["param_names"][i]
            if saved_name is not None and name is not None and saved_name != name:
                problems.append(f"parameter {i}: named {saved_name!r} in the state, {name!r} here")
        for group, saved in zip(self.param_groups, state["param_groups"]):
            absent = [key for key in self.defaults if key not in saved]
            if absent:
                problems.append(f"a parameter group lacks {absent}")
                continue
            wrong = [key for key in self.defaults if not _same_kind(saved[key], self.defaults[key])]
            if wrong:
                problems.append(f"hyper-parameters {wrong} in the state are not numbers (or pairs of numbers)")
                continue
            try:
                self._check_hyperparameters({**group, **{key: saved[key] for key in self.defaults}})
            except (ConfigError, TypeError) as error:
                problems.append(f"bad hyper-parameter in the state: {error}")
        expected = self._buffer_shapes()
        buffers = state["buffers"]
        missing = sorted(set(expected) - set(buffers))
        unexpected = sorted(set(buffers) - set(expected))
        if missing:
            problems.append(f"missing buffers {missing}")
        if unexpected:
            problems.append(f"unexpected buffers {unexpected}")
        for key in sorted(set(expected) & set(buffers)):
            array = np.asarray(buffers[key])
            if array.shape != expected[key]:
                problems.append(f"buffer {key!r}: shape {array.shape} in the state, {expected[key]} here")
            elif array.dtype.kind != "f":
                problems.append(f"buffer {key!r}: dtype {array.dtype}, expected a float array")
            elif not np.isfinite(array).all() or (key.startswith("exp_avg_sq") and (array < 0).any()):
                problems.append(f"buffer {key!r}: holds non-finite values (or a negative second moment)")
        return problems

    def _param_names(self):
        return [name for group in self.param_groups for name in group["param_names"]]

    def __repr__(self):
        lines = [f"{type(self).__name__}(step_count={self.step_count},"]
        for k, group in enumerate(self.param_groups):
            numel = sum(p.data.size for p in group["params"])
            lines.append(f"  group {k}: {len(group['params'])} tensors, {numel:,} values, "
                         f"{self._hyperparameters(group)}")
        return "\n".join(lines) + ")"


def _split(flat, shapes):
    """Views of consecutive stretches of a flat array, shaped as `shapes`."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views


def _same_kind(value, default):
    """value is a number, or a list of as many numbers as the tuple `default` holds."""
    if isinstance(default, tuple):
        return isinstance(value, list) and len(value) == len(default) and all(_same_kind(v, 0.0) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STEPS


def _json_number(value):
    if isinstance(value, (tuple, list)):
        return [float(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return float(value)


def _as_groups(params):
    """Normalise the `params` argument to a list of group dicts. Accepts a
    Tensor, an iterable of Tensors, of (name, Tensor) pairs (as
    `named_parameters()` yields), or of group dicts."""
    if isinstance(params, Tensor):
        params = [params]
    if isinstance(params, dict):
        raise TypeError("pass a list of parameter groups (dicts), or named_parameters() items, not a dict")
    params = list(params)
    if params and all(isinstance(g, dict) for g in params):
        groups = []
        for g in params:
            if "params" not in g:
                raise ConfigError(f"a parameter group needs a 'params' entry; got keys {sorted(g)}")
            items = [g["params"]] if isinstance(g["params"], Tensor) else list(g["params"])
            groups.append({**g, **_split_named(items, g.get("param_names"))})
        return groups
    return [_split_named(params, None)]


def _split_named(items, names):
    """{"params": [...], "param_names": [...]} from Tensors or (name, Tensor) pairs."""
    if items and all(isinstance(item, tuple) and len(item) == 2 for item in items):
        names = [name for name, _ in items]
        items = [p for _, p in items]
    out = {"params": items}
    if names is not None:
        out["param_names"] = list(names)
    return out


def _check_distinct(params):
    """Each parameter once: a Tensor (or data array) listed twice would be updated twice."""
    seen_tensors, seen_arrays = set(), set()
    for p in params:
        if id(p) in seen_tensors:
            raise ConfigError(f"parameter {p.name!r} appears more than once in the optimizer's parameters")
        if id(p.data) in seen_arrays:
            raise ConfigError(f"parameter {p.name!r} shares its data array with another parameter; "
                              "pass shared (tied) weights once")
        seen_tensors.add(id(p))
        seen_arrays.add(id(p.data))


def _ranges(groups):
    """Group index lists, short: [[0..3], [4..9]]."""
    return "[" + ", ".join(f"[{g[0]}..{g[-1]}]" if g else "[]" for g in groups) + "]"


def param_groups_for_decay(named_parameters, weight_decay, no_decay=None):
    """nanoGPT's two AdamW groups: every tensor with ndim >= 2 (linear weights
    and embeddings) decays; biases and LayerNorm gains and shifts (ndim < 2)
    do not. `no_decay(name, tensor) -> bool`, if given, moves further tensors
    to the no-decay group, e.g. `lambda name, p: "wte" in name or "wpe" in name`
    to exclude embeddings as well.

    `named_parameters` is an iterable of (name, Tensor) pairs or a dict.
    Returns [decay_group, no_decay_group]; either may be empty.
    """
    items = named_parameters.items() if isinstance(named_parameters, dict) else named_parameters
    decay, keep = [], []
    for name, p in items:
        exclude = p.data.ndim < 2 or (no_decay is not None and no_decay(name, p))
        (keep if exclude else decay).append((name, p))
    return [
        {"params": [p for _, p in decay], "param_names": [n for n, _ in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in keep], "param_names": [n for n, _ in keep], "weight_decay": 0.0},
    ]


def clip_grad_norm(params, max_norm):
    """Scale every gradient by the same factor so that their global L2 norm
    is at most `max_norm`; return the norm before clipping.

    The norm is summed in float64. When it exceeds max_norm each grad is
    REPLACED by grad * max_norm / (norm + 1e-6) (the old arrays may be shared,
    so they are never written). A non-finite norm is returned without touching
    anything, so the caller can see the divergence and stop.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    params = [params] if isinstance(params, Tensor) else list(params)
    params = [p for p in params if p.grad is not None]
    sum_of_squares = 0.0
    for p in params:
        g = np.array(p.grad, dtype=np.float64)   # a float64 copy, one parameter at a time
        np.square(g, out=g)              # (not g @ g: threaded OpenBLAS ddot can be 100x slower)
        sum_of_squares += float(g.sum())
    total_norm = math.sqrt(sum_of_squares)
    if math.isfinite(total_norm) and total_norm > max_norm:
        scale = max_norm / (total_norm + CLIP_EPS)
        for p in params:
            p.grad = p.grad * scale                 # a new array, same dtype
    return total_norm
