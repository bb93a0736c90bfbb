"""gradcheck: compare backward's gradients with central finite differences, in float64.

    ok = gradcheck(lambda x, w: (x @ w).tanh().sum(), [x, w])

Every input that requires grad is perturbed element by element, x_i +- eps, and
(f(x + eps) - f(x - eps)) / (2 eps) is compared with the analytic gradient of
sum(f(...) * r) for a fixed random r (so non-scalar outputs are checked in every
direction at once). On failure a GradcheckError names the input, the element, and
both values.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _scalar_objective(output, weights):
    """sum(output * weights): a scalar whose gradient exercises every output element."""
    return float(np.sum(output.data * weights))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, seed=0, raise_on_failure=True):
    """Check fn(*inputs)'s backward against central differences. Inputs must be float64 to be checked."""
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")

    output = fn(*inputs)
    weights = np.random.default_rng(seed).standard_normal(output.shape)
    for i in checked:
        inputs[i].grad = None
    (output * Tensor(weights)).sum().backward()
    analytic = {i: (np.zeros_like(inputs[i].data) if inputs[i].grad is None else inputs[i].grad.copy())
                for i in checked}

    for i in checked:
        data = inputs[i].data
        numeric = np.zeros_like(data)
        for index in np.ndindex(data.shape):
            original = data[index]
            data[index] = original + eps
            plus = _scalar_objective(fn(*inputs), weights)
            data[index] = original - eps
            minus = _scalar_objective(fn(*inputs), weights)
            data[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        bad = ~np.isclose(analytic[i], numeric, atol=atol, rtol=rtol)
        if bad.any():
            index = tuple(int(j) for j in np.argwhere(bad)[0])
            name = inputs[i].name or f"input {i}"
            message = (f"gradcheck failed for {name} (shape {data.shape}) at element {index}: "
                       f"analytic {analytic[i][index]:.10g}, numeric {numeric[index]:.10g} "
                       f"({int(bad.sum())} of {bad.size} elements differ; "
                       f"max abs difference {np.max(np.abs(analytic[i] - numeric)):.3g})")
            if raise_on_failure:
                raise GradcheckError(message)
            return False
    return True
