"""numpretrain.nn: modules, layers, attention and the Transformer block that GPT and BERT share.

    module.py          Parameter, Module (parameters, paths, state dicts, train/eval, rng), ModuleList
    layers.py          Linear, Embedding, LayerNorm, Dropout, GELU (their ops: autograd/)
    self_attention.py  SelfAttention (fused, composite and KV-cached paths), KVCache
    transformer.py     MLP, TransformerBlock (pre-LN and post-LN)
    decode.py          the KV-cached block in plain NumPy, for generation
    init.py            init_weights: normal(0, 0.02), GPT-2's residual scaling

Imports: numpretrain.errors and numpretrain.autograd (hence speed) only.
"""

from numpretrain.nn.init import INIT_STD, init_weights
from numpretrain.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear
from numpretrain.nn.module import LoadResult, Module, ModuleList, Parameter, StateDictError
from numpretrain.nn.self_attention import KVCache, SelfAttention
from numpretrain.nn.transformer import MLP, TransformerBlock

__all__ = [
    "Parameter", "Module", "ModuleList", "StateDictError", "LoadResult",
    "Linear", "Embedding", "LayerNorm", "Dropout", "GELU",
    "SelfAttention", "KVCache",
    "MLP", "TransformerBlock",
    "init_weights", "INIT_STD",
]
