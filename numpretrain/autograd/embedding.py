"""Embedding lookup as one op: rows of a (V, C) table picked by integer ids.

    out[..., :] = weight[ids[...], :]                                (*ids.shape, C)
    backward: dweight[v] = sum of g[...] over every position whose id is v

An id that appears several times collects several gradients (a scatter-add). With a
`padding_idx`, that row gets no gradient at all, as in PyTorch's and Hugging Face's
nn.Embedding(padding_idx=...): padding positions must not move the table.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import check_ids_in_range


def embedding(weight, ids, padding_idx=None):
    """weight[ids]: rows of a (V, C) table for integer ids of any shape -> (*ids.shape, C)."""
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    V, C = weight.shape
    check_ids_in_range(ids, V, what="id", where="embedding", error=IndexError)
    def backward(g):                                    # g: (*ids.shape, C)
        # Scatter-add the positions' gradients into their rows: sort the ids so equal ids are
        # adjacent, then sum each run with one np.add.reduceat (several times faster than np.add.at).
        grad = np.zeros_like(weight.data)               # (V, C)
        flat_ids = ids.reshape(-1)                      # (N,)
        if flat_ids.size:
            order = np.argsort(flat_ids, kind="stable")
            sorted_ids = flat_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])   # first of each run
            grad[sorted_ids[starts]] = np.add.reduceat(g.reshape(-1, C)[order], starts, axis=0)
        if padding_idx is not None:
            grad[padding_idx] = 0                       # the padding row never learns
        return (grad,)
    return Tensor.from_op(weight.data[ids], (weight,), backward, "embedding")
