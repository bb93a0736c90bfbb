"""Capture named activations (and, after backward, their gradients) for inspection and plotting.

Modules name what they produce by its path in the model (`h.0.attn.probs`, `h.0.mlp.fc`).
Inside a `capture(...)` block every named tensor whose name matches one of the given
shell-style patterns is kept, and its gradient is retained:

    with capture("h.*.attn.probs") as seen:
        loss = model(ids, targets)[1]
        loss.backward()
    seen["h.0.attn.probs"].data     # (B, nh, T, T)
    seen["h.0.attn.probs"].grad     # the same shape, after backward
"""

import contextlib
import fnmatch

_active = []  # stack of (patterns, store) for nested captures


def wants(name):
    """True when an active capture would record a tensor of this name (modules may then take a slower,
    fully differentiable path, e.g. attention probabilities as a tensor of their own)."""
    return any(fnmatch.fnmatchcase(name, p) for patterns, _ in _active for p in patterns)


def record(tensor):
    if not _active or tensor.name is None:
        return
    for patterns, store in _active:
        if any(fnmatch.fnmatchcase(tensor.name, p) for p in patterns):
            if tensor.requires_grad:
                tensor.retain_grad()
            store[tensor.name] = tensor


@contextlib.contextmanager
def capture(*patterns):
    """Record every tensor named inside the block that matches a pattern (default: all)."""
    store = {}
    _active.append((patterns or ("*",), store))
    try:
        yield store
    finally:
        _active.pop()
