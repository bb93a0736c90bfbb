"""The basic layers: Linear, Embedding, LayerNorm, Dropout, GELU (their ops are in autograd/).

Weight layout. `Linear.weight` is stored (in_features, out_features), so the forward
pass is `x @ W + b`: one GEMM with no transpose. This is GPT-2's layout (its `Conv1D`
stores (in, out)), so GPT-2 weights copy over as they are; Hugging Face BERT's
`nn.Linear` stores (out, in), so BERT weights are transposed on the way in and out.

Each layer names its output by its path in the model (`h.0.ln_1`, `h.0.attn.c_attn`),
so `capture(...)` and the graph printers can find it.
"""

import numpy as np

from numpretrain.autograd import functional as F
from numpretrain.autograd.ops import as_tensor
from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import ConfigError, check_ids_in_range
from numpretrain.nn.init import INIT_STD, default_generator, normal_, ones_, zeros_
from numpretrain.nn.module import Module, Parameter


def _check_positive_int(owner, name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _check_probability(owner, name, p):
    if not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
        raise ConfigError(f"{owner}: {name} must be a probability in [0, 1), got {p!r}")


def _check_input(module, x, width, like):
    """x as a Tensor whose last axis is `width` and whose dtype is that of the parameter `like`
    (a float64 input would silently turn a float32 layer's work into float64)."""
    x = as_tensor(x)
    if x.ndim == 0 or x.shape[-1] != width:
        raise ValueError(f"{type(module).__name__} {module.path!r}: expected an input whose last axis is "
                         f"{width}, got shape {x.shape}")
    if x.dtype != like.dtype:
        raise TypeError(f"{type(module).__name__} {module.path!r}: the input is {x.dtype} but the parameters are "
                        f"{like.dtype}; convert one of them (e.g. model.to(np.{x.dtype}))")
    return x


# ----- Linear: x @ W + b by the fused op F.linear (autograd/linear.py) -----

class Linear(Module):
    """y = x @ weight + bias, with weight (in_features, out_features) (see the file's docstring)."""

    def __init__(self, in_features, out_features, bias=True, rng=None):
        _check_positive_int("Linear", "in_features", in_features)
        _check_positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.zeros((self.in_features, self.out_features), dtype=np.float32))
        self.bias = Parameter(np.zeros(self.out_features, dtype=np.float32)) if bias else None
        self.residual_projection = False   # True for attn.c_proj and mlp.c_proj: init_weights scales them
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None, std=INIT_STD):
        normal_(self.weight, std, default_generator() if rng is None else rng)
        if self.bias is not None:
            zeros_(self.bias)

    def forward(self, x):
        x = _check_input(self, x, self.in_features, self.weight)  # (..., in)
        return self.name_output(F.linear(x, self.weight, self.bias))  # (..., out)

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table looked up by integer ids: (...) -> (..., C).

    padding_idx (optional, as Hugging Face BERT's pad token): that row starts at zero and
    the lookup sends it no gradient.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None):
        _check_positive_int("Embedding", "num_embeddings", num_embeddings)
        _check_positive_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None and not 0 <= padding_idx < num_embeddings:
            raise ConfigError(f"Embedding: padding_idx {padding_idx} is not a row of a table of {num_embeddings} rows")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        self.weight = Parameter(np.zeros((self.num_embeddings, self.embedding_dim), dtype=np.float32))
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None, std=INIT_STD):
        normal_(self.weight, std, default_generator() if rng is None else rng)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids):
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.dtype.kind in "iu":                      # (other dtypes: F.embedding refuses them)
            check_ids_in_range(ids, self.num_embeddings, what="id", where=f"Embedding {self.path!r}",
                               error=IndexError)
        return self.name_output(F.embedding(self.weight, ids, self.padding_idx))   # (..., C)

    def extra_repr(self):
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (GPT eps 1e-5, BERT 1e-12)."""

    def __init__(self, n, eps=1e-5):
        _check_positive_int("LayerNorm", "n", n)
        if not isinstance(eps, (int, float, np.floating)) or not eps > 0:
            raise ConfigError(f"LayerNorm: eps must be a positive number, got {eps!r}")
        self.n, self.eps = int(n), float(eps)
        self.weight = Parameter(np.ones(self.n, dtype=np.float32))
        self.bias = Parameter(np.zeros(self.n, dtype=np.float32))

    def reset_parameters(self, rng=None, std=INIT_STD):
        ones_(self.weight)
        zeros_(self.bias)

    def forward(self, x):
        x = _check_input(self, x, self.n, self.weight)  # (..., C)
        return self.name_output(F.layer_norm(x, self.weight, self.bias, self.eps))  # (..., C)

    def extra_repr(self):
        return f"{self.n}, eps={self.eps:g}"


class Dropout(Module):
    """Zero each element with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
    The mask is drawn from `self.rng` (see Module.set_rng)."""

    def __init__(self, p=0.0):
        _check_probability("Dropout", "p", p)
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return self.name_output(F.dropout(as_tensor(x), self.p, self.rng, training=True))

    def extra_repr(self):
        return f"p={self.p:g}"


class GELU(Module):
    """x * Phi(x): approximate="tanh" (GPT-2's gelu_new, also OpenAI GPT's) or "none" (exact erf, BERT)."""

    def __init__(self, approximate="tanh"):
        if approximate not in ("tanh", "none"):
            raise ConfigError(f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return self.name_output(F.gelu(as_tensor(x), self.approximate))

    def extra_repr(self):
        return f"approximate={self.approximate!r}"
