"""The computational graph behind one objective, as the explorer page draws it.

`graph_nodes(root)` walks the graph from `root` (parents first, as backward() sorts it) and
asks every node to keep its gradient; after `root.backward()`, `describe_graph` describes
each node: its op (or "parameter" for a leaf), its name (`h.0.attn.probs`, a parameter's
`h.0.ln_1.weight`), shape, the norm of its gradient, the nodes it was computed from, and
where its backward is written: the file and first line of the closure each op hands to
`Tensor.from_op`, whose source lines the page shows beside the node. What graph.py prints
as text, the page lays out.
"""

import inspect
import os
import sys

import numpy as np

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # holds numpretrain/


def backward_source(backward):
    """(key "numpretrain/autograd/ops.py:52", where) of a backward closure: where holds its file, first
    line and source lines, and the op around it (the function whose forward made the node: the
    closure is written right beneath it) as op_line and op_lines, when the source is on disk."""
    code = backward.__code__
    path = os.path.relpath(code.co_filename, PACKAGE_ROOT).replace(os.sep, "/")
    where = {"file": path, "line": code.co_firstlineno, "lines": [], "op_line": None, "op_lines": []}
    try:
        lines, where["line"] = inspect.getsourcelines(backward)
        where["lines"] = [line.rstrip("\n") for line in lines]
        op = enclosing_function(backward)
        if op is not None:
            lines, where["op_line"] = inspect.getsourcelines(op)
            where["op_lines"] = [line.rstrip("\n") for line in lines]
    except (OSError, TypeError):             # no source on disk (a frozen install): the place alone
        pass
    return f"{path}:{where['line']}", where


def enclosing_function(closure):
    """The module-level function a closure was defined in ("softmax" for "softmax.<locals>.backward"), or None."""
    outer = closure.__code__.co_qualname.split(".<locals>.")
    if len(outer) < 2:
        return None
    found = sys.modules.get(closure.__module__)
    for name in outer[0].split("."):
        found = getattr(found, name, None)
    return found if inspect.isfunction(found) else None


def graph_nodes(root):
    """Every node `root` depends on that needs a gradient, parents first; each will keep its .grad."""
    tensors = root._topological_order()           # parents before children, root last
    for tensor in tensors:
        tensor.retain_grad()
    return tensors


def describe_graph(tensors, model):
    """{"nodes": [{op, name, shape, grad_norm, parents, backward}], "sources": {backward: its place and lines}}."""
    index = {id(t): n for n, t in enumerate(tensors)}
    parameter_names = {id(p): name for name, p in model.named_parameters()}
    nodes, sources = [], {}
    for t in tensors:
        source = None
        if t._backward is not None:
            source, where = backward_source(t._backward)
            sources.setdefault(source, where)
        nodes.append({"op": t.op or "parameter", "name": t.name or parameter_names.get(id(t), ""),
                      "shape": list(t.shape),
                      "grad_norm": None if t.grad is None else float(np.linalg.norm(t.grad)),
                      "parents": [index[id(p)] for p in t._parents if id(p) in index],
                      "backward": source})
    return {"nodes": nodes, "sources": sources}
