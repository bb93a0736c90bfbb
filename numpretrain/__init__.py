"""numpretrain: GPT and BERT pretraining and fine-tuning from scratch in pure NumPy.

The layers, bottom up (each imports only from the ones above it in this list):

    errors.py    the exceptions every layer raises
    speed/       threads over row blocks, BLAS and allocator settings (optional reading)
    autograd/    Tensor, primitive and fused ops with their backward, gradcheck, graphs
    nn/          Module, Linear, Embedding, LayerNorm, SelfAttention, TransformerBlock
    models/      GPT, BERT, classifier heads
    tokenizers/  character, byte-level BPE, WordPiece
    data/        LM windows, BERT masking and sentence pairs, labelled sets; builtin/ the corpus
    storage/     safetensors and JSON files, atomic writes, run folders, Hugging Face names
    training/    the loop, AdamW, schedules
    app/         what the command line drives: pretrain, finetune, probing, embed, cli

The autograd core is importable from the top: Tensor, no_grad, gradcheck, the graph
printers, and the ops in `numpretrain.functional` (imported as F in the docs).
"""

from numpretrain.speed import blas  # noqa: F401, I001  (first: it sets OpenBLAS's spin before NumPy loads it)
from numpretrain.autograd import (GradcheckError, Tensor, capture, concatenate, erf, functional, gradcheck, graph_dot,
                                  graph_text, is_grad_enabled, no_grad, ops, self_attention, stack)

__version__ = "0.1.0"

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError", "graph_text", "graph_dot",
           "capture", "self_attention", "concatenate", "stack", "erf", "functional", "ops"]
