"""Dropout as one op: zero each element with probability p, scale the survivors by 1 / (1 - p).

    keep = (u >= p) / (1 - p),  u ~ Uniform[0, 1) per element      out = x * keep
    backward: dx = g * keep   (out is linear in x, with the mask as its slope)

Scaling at training time keeps E[out] = x, so evaluation is the identity. `dropout_mask` is
the one place a mask is drawn: the attention op and generation's cached path use it too, so
every dropout in the package consumes the generator the same way.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor


def dropout_mask(shape, p, rng, dtype):
    """The scaled keep-mask: 1 / (1 - p) where an element is kept (probability 1 - p), else 0."""
    return (rng.random(shape, dtype=np.float32) >= p) * np.asarray(1 / (1 - p), dtype)


def dropout(x, p, rng, training=True):
    """x with each element zeroed with probability p and the rest scaled; identity when not training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    if rng is None:
        raise ValueError("dropout: training with p > 0 needs rng, a numpy.random.Generator")
    keep = dropout_mask(x.shape, p, rng, x.dtype)                  # saved: the scaled keep-mask
    def backward(g):
        return (g * keep,)
    return Tensor.from_op(x.data * keep, (x,), backward, "dropout")
