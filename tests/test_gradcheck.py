"""gradcheck itself: it passes correct ops, catches wrong ones, and says where.

A checker that never fails proves nothing, so each test here builds an op with a
deliberately wrong backward (with Tensor.from_op, the way numpretrain/autograd/ops.py
builds its own) and checks that gradcheck raises, naming the input and the element,
with both values.
"""

import re

import numpy as np
import pytest

from numpretrain import GradcheckError, Tensor, gradcheck


def leaf(array, name=None):
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True, name=name)


def cube(x, wrong_at=None, factor=3.0):
    """x ** 3 with backward factor * x ** 2, off by +1 at element `wrong_at` if given."""
    def backward(g):
        grad = g * factor * x.data ** 2
        if wrong_at is not None:
            grad = grad.copy()
            grad[wrong_at] += 1.0
        return (grad,)
    return Tensor.from_op(x.data ** 3, (x,), backward, "cube")


def test_passes_a_correct_backward():
    assert gradcheck(lambda x, w: (x @ w).tanh().sum(), [leaf(np.ones((2, 3)) * 0.3), leaf(np.eye(3))])
    assert gradcheck(cube, [leaf([[0.5, -1.0], [2.0, 0.1]])])


def test_catches_a_wrong_backward_and_names_the_input_and_element():
    x = leaf([[0.5, -1.0, 0.3], [2.0, 0.1, -0.7]], name="weights")
    with pytest.raises(GradcheckError) as error:
        gradcheck(lambda x: cube(x, wrong_at=(1, 2)), [x])
    message = str(error.value)
    assert "weights" in message and "(2, 3)" in message and "(1, 2)" in message
    # both values are gradients of sum(f * r) for gradcheck's random r; they differ by the +1
    analytic, numeric = (float(n) for n in re.findall(r"(?:analytic|numeric) (-?[\d.e+-]+)", message))
    assert analytic - numeric == pytest.approx(1.0, rel=1e-6)
    assert "1 of 6 elements" in message


def test_catches_a_gradient_that_is_wrong_everywhere_and_names_an_unnamed_input_by_position():
    a, b = leaf([1.0, 2.0]), leaf([0.5, 0.25])
    with pytest.raises(GradcheckError, match=r"input 1 .*element \(0,\)"):
        gradcheck(lambda a, b: a * cube(b, factor=2.0), [a, b])


def test_a_wrong_backward_visible_in_one_output_direction_only():
    """Non-scalar outputs are checked against a random direction, so an error in any output counts."""
    x = leaf([1.0, 2.0, 3.0])

    def swapped(x):
        def backward(g):
            return (g[::-1] * 2 * x.data,)  # gradient sent to the wrong elements
        return Tensor.from_op(x.data ** 2, (x,), backward, "swapped")

    with pytest.raises(GradcheckError):
        gradcheck(swapped, [x])


def test_returns_false_instead_of_raising_when_asked():
    assert gradcheck(lambda x: cube(x, wrong_at=(0,)), [leaf([1.0, 2.0])], raise_on_failure=False) is False


def test_refuses_float32_inputs():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float32.*float64"):
        gradcheck(lambda x: x * 2, [x])


def test_refuses_when_nothing_requires_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda x: x * 2, [Tensor(np.ones(3))])


def test_skips_inputs_that_do_not_require_grad():
    """Constants (float32 or not) ride along unchecked; the input data is restored afterwards."""
    x = leaf([0.5, 1.5])
    constant = Tensor(np.array([2.0, 3.0], dtype=np.float32))
    assert gradcheck(lambda x, c: x * c, [x, constant])
    np.testing.assert_array_equal(x.data, [0.5, 1.5])
