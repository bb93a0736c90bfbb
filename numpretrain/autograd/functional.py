"""Every differentiable op under one name, imported as F in the docs and the layers:

    from numpretrain import functional as F
    loss = F.cross_entropy(logits, targets)

The ops live in files of their own, each forward with its backward right beneath it:

    ops.py         where, masked_fill (and the primitives behind Tensor's operators)
    softmax.py     softmax, log_softmax, logsumexp, cross_entropy
    layer_norm.py  layer_norm          gelu.py       gelu, normal_cdf
    dropout.py     dropout             embedding.py  embedding
    linear.py      linear              attention.py  self_attention
"""

from numpretrain.autograd.attention import self_attention
from numpretrain.autograd.dropout import dropout
from numpretrain.autograd.embedding import embedding
from numpretrain.autograd.gelu import gelu, normal_cdf
from numpretrain.autograd.layer_norm import layer_norm
from numpretrain.autograd.linear import linear
from numpretrain.autograd.ops import masked_fill, where
from numpretrain.autograd.softmax import IGNORE_INDEX, cross_entropy, log_softmax, logsumexp, softmax

__all__ = ["self_attention", "dropout", "embedding", "gelu", "normal_cdf", "layer_norm", "linear",
           "masked_fill", "where", "IGNORE_INDEX", "cross_entropy", "log_softmax", "logsumexp", "softmax"]
