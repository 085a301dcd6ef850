"""activate / predict / one_hot."""


import pytest
import torch

from seglab import activate, one_hot, predict


def test_activate_softmax_vs_sigmoid():
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(activate(x, "multiclass").sum(1), torch.ones(2, 4, 4))
    torch.testing.assert_close(activate(x, "multilabel"), torch.sigmoid(x))
    with pytest.raises(ValueError, match="mode must be one of"):
        activate(x, "softmax")


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9])
def test_predict_threshold_in_logit_space_matches_sigmoid(threshold):
    x = torch.randn(3, 2, 5, 5, 5, dtype=torch.float64) * 3
    assert torch.equal(predict(x, "multilabel", threshold), torch.sigmoid(x) > threshold)


def test_predict_argmax_and_errors():
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(predict(x, "multiclass"), x.argmax(1))
    with pytest.raises(ValueError, match=r"threshold must be a probability in \(0, 1\)"):
        predict(x, "binary", threshold=1.0)


def test_one_hot_with_ignore():
    t = torch.tensor([[0, 2, 255]])
    oh = one_hot(t, 3, ignore_index=255)
    assert oh.shape == (1, 3, 3)
    assert oh[0, :, 2].sum() == 0 and oh[0, 2, 1] == 1
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\), found \[255\]"):
        one_hot(t, 3)
    with pytest.raises(TypeError, match="integer class map"):
        one_hot(t.float(), 3)
