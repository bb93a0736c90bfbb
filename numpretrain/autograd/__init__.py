"""numpretrain.autograd: the engine. A Tensor over numpy.ndarray and reverse-mode autodiff.

    tensor.py     Tensor, backward() over the graph in topological order, no_grad
    ops.py        primitive ops (arithmetic, matmul, reductions, shapes, indexing, where), each
                  forward with its backward right beneath it
    softmax.py    softmax, log_softmax, logsumexp, cross_entropy (the one stable log-sum-exp)
    layer_norm.py, gelu.py, dropout.py, embedding.py, linear.py, attention.py
                  fused ops: one graph node each, backward derived by hand (docs/gradients.md);
                  each a plain forward / backward pair, run by the op through speed/ in one line
    erf.py        erf to float64 precision (NumPy has none; BERT's exact GELU needs it)
    functional.py all the ops under one name, `F` in the docs
    gradcheck.py  central finite differences in float64
    graph.py      the graph as text or Graphviz DOT;  capture.py: named activations and their grads

Imports: numpy, numpretrain.errors and numpretrain.speed only.
"""

from numpretrain.autograd.tensor import Tensor, is_grad_enabled, no_grad  # noqa: I001 (Tensor first: ops need it)
from numpretrain.autograd import functional, ops
from numpretrain.autograd.attention import self_attention
from numpretrain.autograd.capture import capture
from numpretrain.autograd.erf import erf
from numpretrain.autograd.gradcheck import GradcheckError, gradcheck
from numpretrain.autograd.graph import graph_dot, graph_text
from numpretrain.autograd.ops import concatenate, stack

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError", "graph_text", "graph_dot",
           "capture", "self_attention", "concatenate", "stack", "erf", "functional", "ops"]
