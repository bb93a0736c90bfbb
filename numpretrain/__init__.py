"""numpretrain: GPT and BERT pretraining and fine-tuning from scratch in pure NumPy.

The autograd core is importable from the top: Tensor, no_grad, gradcheck, the graph
printers, and the fused ops in `numpretrain.functional` (imported as F in the docs).
"""

from . import parallel  # first: it tunes OpenBLAS's threads before NumPy loads OpenBLAS
from . import functional, ops  # noqa: I001
from .attention import self_attention
from .capture import capture
from .gradcheck import GradcheckError, gradcheck
from .graph import graph_dot, graph_text
from .ops import concatenate, stack
from .special import erf
from .tensor import Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError", "graph_text", "graph_dot",
           "capture", "parallel", "self_attention", "concatenate", "stack", "erf", "functional", "ops"]
