"""A tour of numpretrain's autograd, in four stages. Runs in a few seconds.

    python demos/autograd_tour.py

1. A tiny expression (micrograd's classic): build it, print its graph, run backward,
   print every node's gradient and compare it with the chain rule worked by hand.
2. A 2-layer MLP built from Tensor and ops directly: print its graph and every gradient.
3. gradcheck: the MLP's hand-written backward against central differences, in float64.
4. Train the MLP on XOR with plain SGD, written inline, to 100% accuracy.

Everything is seeded, so every run prints the same numbers.
"""

import numpy as np

from numpretrain import Tensor, capture, gradcheck, graph_text, no_grad
from numpretrain import functional as F

SEED = 0
HIDDEN = 8            # hidden units: XOR needs at least 2; a few more make training quick and sure
LEARNING_RATE = 0.5
STEPS = 500           # accuracy reaches 100% long before; the rest drives the loss down
LOG_EVERY = 50


def stage(title):
    print(f"\n{'=' * 72}\n{title}\n{'=' * 72}")


def indented(array):
    return "    " + np.array2string(array, precision=4, suppress_small=True).replace("\n", "\n    ")


# ----- 1. a tiny expression -----

def tiny_expression():
    stage("1. A tiny expression: L = (a * b + c) * f")
    a = Tensor(2.0, requires_grad=True, name="a")
    b = Tensor(-3.0, requires_grad=True, name="b")
    c = Tensor(10.0, requires_grad=True, name="c")
    f = Tensor(-2.0, requires_grad=True, name="f")
    with capture() as intermediates:            # keeps every named tensor and its gradient
        e = (a * b).named("e")
        d = (e + c).named("d")
        L = (d * f).named("L")
    print("The graph, output first (each node: op, name, shape, dtype):")
    print(graph_text(L))

    L.backward()
    print(f"\nAfter L.backward(), L = {L.item():g}. Every node's gradient dL/d(node):")
    for t in (a, b, c, f):
        print(f"  leaf          {t.name} = {t.item():6g}   dL/d{t.name} = {t.grad.item():6g}")
    for name, t in intermediates.items():
        print(f"  intermediate  {name} = {t.item():6g}   dL/d{name} = {t.grad.item():6g}")
    print("By hand: dL/da = f * b = 6, dL/db = f * a = -4, dL/dc = f = -2, dL/df = a * b + c = 4.")
    assert (a.grad, b.grad, c.grad, f.grad) == (6, -4, -2, 4)
    print("\nThe graph again, now with the norm of each gradient:")
    print(graph_text(L))


# ----- 2. a 2-layer MLP -----

def init_mlp(rng, dtype=np.float32):
    """Parameters of a 2 -> HIDDEN -> 2 MLP, named after what they are."""
    def param(shape, scale, name):
        return Tensor((rng.standard_normal(shape) * scale).astype(dtype), requires_grad=True, name=name)
    return [param((2, HIDDEN), 1.0, "W1"), param((HIDDEN,), 0.1, "b1"),
            param((HIDDEN, 2), 1 / np.sqrt(HIDDEN), "W2"), param((2,), 0.1, "b2")]


def mlp_logits(x, W1, b1, W2, b2):
    """x (N, 2) -> logits (N, 2): one tanh hidden layer."""
    h = (x @ W1 + b1).named("pre")       # (N, HIDDEN)
    h = h.tanh().named("h")              # (N, HIDDEN)
    return (h @ W2 + b2).named("logits")  # (N, 2)


def mlp_loss(x, y, *params):
    """Mean cross-entropy of the MLP's logits against class ids y (N,)."""
    return F.cross_entropy(mlp_logits(x, *params), y).named("loss")


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def show_mlp(params):
    stage("2. A 2-layer MLP: logits = tanh(x @ W1 + b1) @ W2 + b2, loss = cross_entropy(logits, y)")
    with capture() as intermediates:
        loss = mlp_loss(Tensor(XOR_X, name="x"), XOR_Y, *params)
    print(graph_text(loss))
    loss.backward()
    print(f"\nloss = {loss.item():.4f}. The gradient of every node, shaped like the node:")
    for t in params + [intermediates[name] for name in ("pre", "h", "logits")]:
        kind = "parameter   " if t.is_leaf else "intermediate"
        print(f"  {kind} {t.name} {t.shape}, grad:\n{indented(t.grad)}")
    for p in params:
        p.zero_grad()                     # gradients accumulate: start training from zero


# ----- 3. gradcheck -----

def check_gradients(params):
    stage("3. gradcheck: the analytic gradients against central differences, in float64")
    params64 = [Tensor(p.data.astype(np.float64), requires_grad=True, name=p.name) for p in params]
    x64 = Tensor(XOR_X.astype(np.float64))
    n = sum(p.size for p in params64)
    print(f"Perturbing each of the {n} parameters by +-1e-6 and comparing "
          "(f(p + eps) - f(p - eps)) / 2eps with backward's gradient ...")
    gradcheck(lambda *ps: mlp_loss(x64, XOR_Y, *ps), params64)  # raises GradcheckError on a mismatch
    print("gradcheck passed: every analytic gradient matches its numeric estimate.")


# ----- 4. training -----

def accuracy(params):
    with no_grad():                       # evaluation: no graph is built
        predictions = mlp_logits(Tensor(XOR_X), *params).data.argmax(axis=-1)
    return float((predictions == XOR_Y).mean()), predictions


def train(params):
    stage(f"4. Training on XOR with plain SGD (learning rate {LEARNING_RATE}, float32)")
    x = Tensor(XOR_X, name="x")
    first_perfect = None
    for step in range(STEPS + 1):
        loss = mlp_loss(x, XOR_Y, *params)
        acc, _ = accuracy(params)
        if acc == 1.0 and first_perfect is None:
            first_perfect = step
            print(f"  step {step:4d}   loss {loss.item():.4f}   accuracy {acc:.0%}   <- every point right")
        elif step % LOG_EVERY == 0:
            print(f"  step {step:4d}   loss {loss.item():.4f}   accuracy {acc:.0%}")
        if step == STEPS:
            break
        for p in params:                  # SGD, inline: zero the gradients, backward, step
            p.zero_grad()
        loss.backward()
        for p in params:
            p.data -= LEARNING_RATE * p.grad
    acc, predictions = accuracy(params)
    print("\n  x1 x2 | target  predicted")
    for (x1, x2), target, predicted in zip(XOR_X.astype(int), XOR_Y, predictions):
        print(f"   {x1}  {x2} |   {target}        {predicted}")
    if acc < 1.0:
        raise SystemExit(f"XOR not learned: accuracy {acc:.0%} after {STEPS} steps")
    print(f"\nXOR learned: 100% accuracy (first at step {first_perfect}), final loss {loss.item():.4f}; "
          f"parameters stayed {params[0].dtype}.")


def main():
    rng = np.random.default_rng(SEED)
    tiny_expression()
    params = init_mlp(rng)
    show_mlp(params)
    check_gradients(params)
    train(params)


if __name__ == "__main__":
    main()
