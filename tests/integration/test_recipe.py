"""The recipe's optimizers against their formulas written with NumPy, a few steps each, across a change of the
learning rate (a milestone): PyTorch's SGD with coupled weight decay (the mixup paper's code) and AdamW's
decoupled decay. Keras on the suite's backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from mixup_sweeps.train import optimizers

RATES = [0.1, 0.1, 0.01, 0.01]  # a milestone after step 2


def _run(optimizer: keras.optimizers.Optimizer, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> list:
    variables = [keras.Variable(p.copy()) for p in params]
    optimizer.build(variables)
    for rate, step_grads in zip(RATES, grads):
        optimizer.learning_rate.assign(rate)  # what the schedule does before an epoch
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _problem() -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)]
    grads = [[rng.normal(size=p.shape).astype(np.float32) for p in params] for _ in RATES]
    return params, grads


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_is_pytorchs_with_coupled_weight_decay(nesterov):
    params, grads = _problem()
    momentum, decay = 0.9, 0.05
    expected = [p.astype(np.float64) for p in params]
    buffers = [np.zeros_like(p) for p in expected]
    for rate, step_grads in zip(RATES, grads):  # torch.optim.SGD.step, dampening 0
        for i, g in enumerate(step_grads):
            d = g + decay * expected[i]
            buffers[i] = momentum * buffers[i] + d
            expected[i] = expected[i] - rate * (d + momentum * buffers[i] if nesterov else buffers[i])
    trainer = OmegaConf.create({"optimizer": "sgd", "learning_rate": 0.1, "momentum": momentum, "nesterov": nesterov,
                                "weight_decay": decay, "precision": "float32"})  # fmt: skip
    got = _run(optimizers.make(trainer), params, grads)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    keras_sgd = _run(keras.optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov), params, grads)
    assert not np.allclose(keras_sgd[0], got[0], atol=1e-4)  # the step the test tells apart


def test_adamw_decays_decoupled_before_the_adam_step():
    params, grads = _problem()
    decay, beta1, beta2, eps = 0.05, 0.9, 0.999, 1e-7  # Keras's Adam defaults
    expected = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in expected]
    v = [np.zeros_like(p) for p in expected]
    for t, (rate, step_grads) in enumerate(zip(RATES, grads), start=1):
        for i, g in enumerate(step_grads):
            expected[i] = expected[i] * (1 - rate * decay)
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            alpha = rate * np.sqrt(1 - beta2**t) / (1 - beta1**t)
            expected[i] = expected[i] - alpha * m[i] / (np.sqrt(v[i]) + eps)
    trainer = OmegaConf.create({"optimizer": "adamw", "learning_rate": 0.1, "weight_decay": decay,
                                "precision": "float32"})  # fmt: skip
    for a, b in zip(_run(optimizers.make(trainer), params, grads), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_decay_is_an_optimizer_variable_a_pack_sets_per_member():
    trainer = OmegaConf.create({"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
                                "weight_decay": 1e-4, "precision": "float32"})  # fmt: skip
    optimizer = optimizers.make(trainer)
    optimizer.build([keras.Variable(np.zeros(3, np.float32))])
    names = [v.name for v in optimizer.variables]
    assert "learning_rate" in names and "weight_decay" in names
    decay = optimizer.variables[names.index("weight_decay")]
    assert np.isclose(float(keras.ops.convert_to_numpy(decay)), 1e-4)
