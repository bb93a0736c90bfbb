"""A test helper: find every array a graph's forward or backward produces in a dtype other than float32."""

import numpy as np


def instrument_float32(root):
    """Check every node's data now, and wrap every backward so each gradient it returns is checked.

    Returns the list of problems, which fills up as backward runs.
    """
    problems = []
    for node in root._topological_order():
        label = node.op or f"leaf {node.name}"
        if node.data.dtype != np.float32:
            problems.append(f"forward of {label} gave {node.data.dtype}")
        if node._backward is not None:
            def checked(g, backward=node._backward, label=label):
                grads = backward(g)
                for i, grad in enumerate(grads):
                    if grad is not None and grad.dtype != np.float32:
                        problems.append(f"backward of {label} gave {grad.dtype} for input {i}")
                return grads
            node._backward = checked
    return problems
