from __future__ import annotations

import pytest
import torch

from blinkstack.common.preprocess import INPUT_SHAPE
from blinkstack_train.export import fold_batchnorm
from blinkstack_train.models import DEFAULT_MODEL, MODEL_SPECS, ProbOpen, build_model, count_parameters

PARAMETER_LIMITS = {"tiny": 30_000, "small": 100_000, "medium": 400_000}


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    x = torch.randn(8, *INPUT_SHAPE)
    logits = model(x)
    assert logits.shape == (8,)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(8)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_size_within_its_class(name):
    assert count_parameters(build_model(name)) <= PARAMETER_LIMITS[name]


def test_family_grows_and_default_fits_the_budget():
    sizes = [count_parameters(build_model(name)) for name in MODEL_SPECS]
    assert sizes == sorted(sizes) and len(sizes) >= 3
    assert count_parameters(build_model(DEFAULT_MODEL)) <= 100_000


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_batchnorm_folding_keeps_the_function(name):
    torch.manual_seed(1)
    model = build_model(name)
    # Non-trivial running statistics, as after training.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *INPUT_SHAPE) * 3 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(16, *INPUT_SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(ProbOpen(folded)(x), ProbOpen(model)(x), atol=1e-5, rtol=0)
        probs = ProbOpen(model)(x)
    assert ((probs >= 0) & (probs <= 1)).all()


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'huge'"):
        build_model("huge")
