"""Print the graph behind a tensor: as indented text, or as Graphviz DOT text (no graphviz needed).

Each node shows its op (or "leaf"), name, shape, dtype, and the norm of its gradient when
it has one, so that after backward you can see where every gradient went.
"""

import numpy as np


def _label(t):
    kind = t.op or ("parameter" if t.requires_grad else "constant")
    name = f" '{t.name}'" if t.name else ""
    grad = "" if t.grad is None else f"  |grad|={np.linalg.norm(t.grad):.4g}"
    return f"{kind}{name} {tuple(t.shape)} {t.dtype}{grad}"


def graph_text(root):
    """An indented tree of the graph, root first; a node seen before is printed as a reference."""
    lines, numbers = [], {}
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if id(node) in numbers:
            lines.append("  " * depth + f"(see #{numbers[id(node)]}) {_label(node)}")
            continue
        numbers[id(node)] = len(numbers)
        lines.append("  " * depth + f"#{numbers[id(node)]} {_label(node)}")
        for parent in reversed(node._parents):
            stack.append((parent, depth + 1))
    return "\n".join(lines)


def graph_dot(root):
    """The graph as Graphviz DOT text: `dot -Tpng graph.dot -o graph.png` where graphviz exists."""
    lines = ["digraph numpretrain {", "  rankdir=BT;", '  node [shape=box, fontname="monospace"];']
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        label = _label(node).replace('"', "'")
        lines.append(f'  n{id(node)} [label="{label}"];')
        for parent in node._parents:
            lines.append(f"  n{id(parent)} -> n{id(node)};")
            stack.append(parent)
    lines.append("}")
    return "\n".join(lines)
