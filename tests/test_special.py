"""erf (numpretrain/autograd/erf.py) against Python's math.erf, to float64 precision.

The exact GELU (BERT's) rests on it, so it is held to 1e-15 absolute error on a dense
grid over [-8, 8], at the seams between its pieces (1, 2.5, 6), and at tiny, huge,
infinite and NaN inputs.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain import erf

MAX_ABS_ERROR = 1e-15


def reference(x):
    return np.array([math.erf(v) for v in np.ravel(x)]).reshape(np.shape(x))


def test_erf_on_a_dense_grid():
    x = np.linspace(-8, 8, 160_001)              # step 1e-4
    error = np.abs(erf(x) - reference(x))
    assert error.max() <= MAX_ABS_ERROR, f"max error {error.max():.3g} at x = {x[error.argmax()]!r}"


@pytest.mark.parametrize("seam", [1.0, 2.5, 6.0])
def test_erf_at_the_seams_between_its_pieces(seam):
    below, above = np.nextafter(seam, 0), np.nextafter(seam, 10)
    x = np.array([below, seam, above, -below, -seam, -above])
    x = np.concatenate([x, seam + np.linspace(-1e-6, 1e-6, 201)])
    assert np.abs(erf(x) - reference(x)).max() <= MAX_ABS_ERROR


def test_erf_at_tiny_values_is_relatively_accurate():
    """Near 0, erf(x) ~ 2x/sqrt(pi): the relative error matters, and must stay at rounding level."""
    x = np.array([5e-324, 1e-300, 1e-200, 1e-30, 1e-16, 1e-8, 1e-4, -1e-300, -1e-8])
    expected = reference(x)
    np.testing.assert_allclose(erf(x), expected, rtol=4e-16, atol=0)
    assert erf(np.array(0.0)) == 0.0 and erf(np.array(-0.0)) == 0.0


def test_erf_at_huge_infinite_and_nan_values():
    x = np.array([8.0, 10.0, 27.0, 1e10, 1e300, np.inf, -6.0, -1e300, -np.inf])
    np.testing.assert_array_equal(erf(x), reference(x))
    assert np.isnan(erf(np.array([np.nan]))[0])


@settings(max_examples=300, deadline=None)
@given(st.floats(-30, 30, allow_nan=False))
def test_erf_matches_math_erf_anywhere(x):
    assert abs(erf(np.array([x]))[0] - math.erf(x)) <= MAX_ABS_ERROR


def test_erf_is_odd_and_monotone():
    x = np.linspace(0, 7, 7001)
    np.testing.assert_array_equal(erf(-x), -erf(x))
    assert np.all(np.diff(erf(x)) >= 0)


def test_erf_keeps_the_float_dtype_and_the_shape():
    x32 = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    out = erf(x32)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_allclose(out, reference(x32.astype(np.float64)), rtol=1e-6, atol=1e-7)
    assert erf(np.zeros((2, 0))).shape == (2, 0)
    assert erf(np.float64(0.5)).dtype == np.float64
    assert erf(np.array([1, 2])).dtype == np.float64      # integers compute in float64
