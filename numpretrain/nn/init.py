"""Initial weights as GPT-2 and BERT draw them, from an explicit numpy.random.Generator.

    init_weights(model, rng=np.random.default_rng(seed), residual_layers=config.n_layer)

- Linear and Embedding weights ~ normal(0, 0.02) (GPT-2's and BERT's initializer_range);
- biases 0; LayerNorm weight 1, bias 0; an Embedding's padding row 0;
- with residual_layers=n_layer, the projections that write into the residual stream
  (`attn.c_proj`, `mlp.c_proj`) are drawn with std 0.02 / sqrt(2 * n_layer), GPT-2's
  scaling: each of the 2 * n_layer residual additions then adds variance ~ 1 / (2 n_layer),
  so the stream's variance does not grow with depth.

Every module that has a `reset_parameters(rng, std)` method is re-drawn by init_weights,
so a model's own parameters (e.g. a bias of a head) join in by defining one.

Layers also draw their weights once when they are constructed, from a process-wide
generator (`default_generator()`, seeded with 0 at import; `seed(n)` resets it), so a
freshly built layer is usable at once; a model normally re-draws everything with
init_weights and its own generator.
"""

import math

import numpy as np

INIT_STD = 0.02  # initializer_range of GPT-2 and BERT (and std of GPT-1's N(0, 0.02))

_construction_generator = np.random.default_rng(0)


def default_generator():
    """The generator layers draw their construction-time weights from."""
    return _construction_generator


def seed(value):
    """Reset the construction-time generator (like torch.manual_seed for freshly built layers)."""
    global _construction_generator
    _construction_generator = np.random.default_rng(value)


def normal_(param, std, rng):
    """Fill a parameter in place with normal(0, std) draws (drawn in float64, then cast, so the
    same generator gives the same weights in float32 and float64 models)."""
    param.data[...] = rng.normal(0.0, std, size=param.shape)


def zeros_(param):
    param.data[...] = 0


def ones_(param):
    param.data[...] = 1


def init_weights(module, std=INIT_STD, residual_layers=None, rng=None):
    """Re-draw every parameter of `module` as described in this file's docstring; returns module.

    std: the standard deviation of weights (0.02).
    residual_layers: the number of Transformer layers n_layer; when given, residual
        projections (Linear layers with `residual_projection = True`) get std / sqrt(2 n_layer).
    rng: a numpy.random.Generator (an int seeds one; None means seed 0), so the same
        generator state always gives the same weights.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    if residual_layers is not None and (not isinstance(residual_layers, (int, np.integer)) or residual_layers < 1):
        raise ValueError(f"init_weights: residual_layers must be the number of layers (>= 1), got {residual_layers!r}")
    residual_std = std if residual_layers is None else std / math.sqrt(2 * residual_layers)
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if reset is not None:
            reset(rng, residual_std if getattr(sub, "residual_projection", False) else std)
    return module
