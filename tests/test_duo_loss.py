"""DUO's loss functions against hand-computed values, and the config's parameterisation."""

from __future__ import annotations

import math

import pytest
import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.duo import DUOConfig, dpo_unlearning_loss, implicit_accuracy, load_config, output_preserving_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_dpo_loss_hand_computed() -> None:
    # pair 0: Delta = (0.10 - 0.12) - (0.30 - 0.25) = -0.07 ; pair 1: Delta = (0.5 - 0.4) - (0.2 - 0.2) = 0.1
    err_safe = torch.tensor([0.10, 0.5])
    ref_err_safe = torch.tensor([0.12, 0.4])
    err_unsafe = torch.tensor([0.30, 0.2])
    ref_err_unsafe = torch.tensor([0.25, 0.2])
    beta = 10.0
    # -log sigmoid(-beta * Delta) = softplus(beta * Delta)
    expected = (_softplus(10.0 * -0.07) + _softplus(10.0 * 0.1)) / 2
    got = dpo_unlearning_loss(err_safe, err_unsafe, ref_err_safe, ref_err_unsafe, beta)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert implicit_accuracy(err_safe, err_unsafe, ref_err_safe, ref_err_unsafe).item() == pytest.approx(0.5)


def test_dpo_loss_at_reference_is_log2_and_direction() -> None:
    e = torch.rand(5)
    assert dpo_unlearning_loss(e, e, e, e, 500.0).item() == pytest.approx(math.log(2.0), rel=1e-6)
    # lowering the error on the safe image lowers the loss; lowering it on the unsafe image raises it
    base = torch.full((3,), 0.2)
    better = dpo_unlearning_loss(base - 0.01, base, base, base, 50.0)
    worse = dpo_unlearning_loss(base, base - 0.01, base, base, 50.0)
    assert better.item() < math.log(2.0) < worse.item()


def test_dpo_loss_gradient_sign() -> None:
    err_safe = torch.tensor([0.2], requires_grad=True)
    err_unsafe = torch.tensor([0.2], requires_grad=True)
    loss = dpo_unlearning_loss(err_safe, err_unsafe, torch.tensor([0.2]), torch.tensor([0.2]), 100.0)
    loss.backward()
    # d/d err_safe = beta * sigmoid(beta*Delta) = 100 * 0.5 ; d/d err_unsafe = -50
    assert err_safe.grad.item() == pytest.approx(50.0)
    assert err_unsafe.grad.item() == pytest.approx(-50.0)


def test_output_preserving_loss() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ref = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    # ((0)^2 + 2^2 + 3^2 + 0^2) / 4
    assert output_preserving_loss(pred, ref).item() == pytest.approx(13.0 / 4.0)
    assert output_preserving_loss(ref, ref).item() == 0.0


def test_config_defaults_are_the_authors() -> None:
    c = DUOConfig()
    assert (c.rank, c.alpha, c.init_lora_weights, c.t_max, c.seed) == (32, 32, "gaussian", 750, 42)
    assert (c.adam_beta1, c.adam_beta2, c.weight_decay, c.adam_epsilon, c.max_grad_norm) == (0.9, 0.999, 1e-2, 1e-8, 1.0)
    assert c.effective_lr == pytest.approx(6e-5)
    assert c.effective_lambda == pytest.approx(5e6)
    assert c.independent_timesteps and c.conditioning == "empty"


def test_presets_and_overrides() -> None:
    nud = load_config("nudity")
    assert (nud.beta, nud.max_steps, nud.batch_size) == (500, 1000, 4)
    vio = load_config("violence")
    assert (vio.beta, vio.max_steps) == (1000, 500)
    assert vio.effective_lr == pytest.approx(3e-5) and vio.effective_lambda == pytest.approx(1e7)
    c = load_config("nudity", {"beta": 1000.0, "max_steps": 3, "seed": None})
    assert c.beta == 1000.0 and c.max_steps == 3 and c.seed == 42
    assert load_config(None, {"lr": 1e-3}).effective_lr == 1e-3
    # YAML reads "1e-3" (no dot) as a string; a config file written that way still works
    assert load_config(None, {"lr": "1e-3", "max_steps": "20"}).effective_lr == 1e-3


def test_bad_configs(tmp_path) -> None:
    with pytest.raises(UserError, match="unknown DUO setting"):
        load_config(None, {"betta": 3})
    with pytest.raises(UserError, match="beta must be positive"):
        load_config(None, {"beta": 0})
    with pytest.raises(UserError, match="no DUO config file or preset"):
        load_config("nope")
    bad = tmp_path / "c.yaml"
    bad.write_text("beta: [1, 2]\n")
    with pytest.raises(UserError, match="beta must be a number"):
        load_config(bad)
    with pytest.raises(UserError, match="max_steps must be a number"):
        load_config(None, {"max_steps": 2.5})
