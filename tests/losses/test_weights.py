"""Class-weight methods against hand-computed values, and the zero-count policy."""

import numpy as np
import pytest

from seglab.advise import weights as W


def test_inverse_frequency_hand_computed():
    # N = 1000 over C' = 3 present classes: raw 1000/(3*100), 1000/(3*300), 1000/(3*600) = 3.333, 1.111, 0.5556
    # mean 1.6667 -> 2, 0.6667, 0.3333; the absent class gets 0
    w = W.inverse_frequency([100, 300, 0, 600])
    np.testing.assert_allclose(w, [2.0, 2 / 3, 0.0, 1 / 3], rtol=1e-12)
    assert w[w > 0].mean() == pytest.approx(1.0)


def test_inverse_frequency_balanced_is_ones():
    np.testing.assert_allclose(W.inverse_frequency([5, 5, 5]), [1, 1, 1])


def test_median_frequency_hand_computed():
    # freq = 100/1000, 300/600, 600/1000 = 0.1, 0.5, 0.6; median 0.5 -> 5, 1, 0.8333
    w = W.median_frequency([100, 300, 600], [1000, 600, 1000])
    np.testing.assert_allclose(w, [5.0, 1.0, 0.5 / 0.6], rtol=1e-12)


def test_median_frequency_zero_class_and_even_median():
    # present freqs 0.1, 0.5 -> median 0.3 -> 3, 0.6; absent class 0
    w = W.median_frequency([100, 0, 300], [1000, 0, 600])
    np.testing.assert_allclose(w, [3.0, 0.0, 0.6], rtol=1e-12)


def test_effective_number_hand_computed():
    # beta = 0.5: (1-b)/(1-b^1) = 1, (1-b)/(1-b^2) = 0.5/0.75 = 2/3; rescaled to sum 2 -> 1.2, 0.8
    np.testing.assert_allclose(W.effective_number([1, 2], beta=0.5), [1.2, 0.8], rtol=1e-12)


def test_effective_number_default_beta_and_zero():
    # beta = 0.9999, n = 10 and 10000: 1e-4/(1-0.9999^10), 1e-4/(1-0.9999^10000)
    b = 0.9999
    raw = np.array([(1 - b) / (1 - b**10), (1 - b) / (1 - b**10000)])
    expected = raw * 2 / raw.sum()
    w = W.effective_number([10, 0, 10000])
    np.testing.assert_allclose(w[[0, 2]], expected, rtol=1e-9)
    assert w[1] == 0.0 and w.sum() == pytest.approx(2.0)


def test_zero_counts_never_inf_or_nan():
    for method in W.METHODS:
        w = W.class_weights(method, [0, 0, 10], [0, 0, 100])
        assert np.all(np.isfinite(w)) and w[0] == 0 and w[1] == 0
        assert np.all(W.class_weights(method, [0, 0], [0, 0]) == 0)
    warnings = W.zero_count_warnings([3, 0], ["bg", "tumour"])
    assert len(warnings) == 1 and "tumour" in warnings[0] and "weight is set to 0" in warnings[0]


def test_pos_weight_negatives_over_positives():
    np.testing.assert_allclose(W.pos_weight([10, 50, 0], 100), [9.0, 1.0, 1.0])


def test_weight_errors():
    with pytest.raises(ValueError, match="unknown class-weight method 'foo'"):
        W.class_weights("foo", [1, 2])
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        W.inverse_frequency([1, -2])
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        W.effective_number([1, 2], beta=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        W.median_frequency([1, 2], [3])
    with pytest.raises(ValueError, match="need image_pixel_totals"):
        W.class_weights("median", [1, 2])
