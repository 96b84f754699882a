"""The optimizers of `trainer.optimizer` that Keras does not have in the form the recipes state them.

- `sgd`: PyTorch's `torch.optim.SGD` (what the mixup paper's code runs), not Keras's: the weight decay is
  *coupled*, an L2 term added to every parameter's gradient (`g + λ·p`, kernels, biases and batch-norm scales
  and offsets alike, as `weight_decay` on `net.parameters()`), and the momentum buffer holds gradients, not
  steps: `b ← μ·b + g`, `p ← p − lr·b` (Nesterov: `p ← p − lr·(g + μ·b)`). Keras's SGD keeps `lr·g` in its
  buffer, which differs from the paper's code for some steps after every learning-rate milestone.
- `adamw`: Keras's Adam with *decoupled* decay first, `p ← p − lr·λ·p` on every trainable variable, then the
  Adam step (PyTorch's and Keras's AdamW order).
The decay λ is an optimizer variable, not a constant of the program: members of one packed program may differ
in it, as in their learning rate. The rate itself is set before each epoch (`recipe.learning_rate`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mixup_sweeps.train import recipe


def _decay_variable(optimizer: keras.optimizers.Optimizer, value: float) -> Any:
    return optimizer.add_variable((), initializer=keras.initializers.Constant(value), name="weight_decay")


class CoupledSGD(keras.optimizers.Optimizer):
    """SGD with momentum as PyTorch computes it, weight decay as an L2 gradient term (module docstring)."""

    def __init__(self, learning_rate: float, momentum: float, nesterov: bool, weight_decay: float,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(learning_rate=learning_rate, name="coupled_sgd", **kwargs)
        self.momentum, self.nesterov, self.initial_decay = float(momentum), bool(nesterov), float(weight_decay)

    def build(self, variables: list) -> None:
        if self.built:
            return
        super().build(variables)
        self.buffers = self.add_optimizer_variables(variables, "momentum_buffer")
        self.decay_variable = _decay_variable(self, self.initial_decay)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        gradient = ops.add(ops.cast(gradient, dtype), ops.multiply(ops.cast(self.decay_variable, dtype), variable))
        step = gradient
        if self.momentum:
            buffer = self.buffers[self._get_variable_index(variable)]
            self.assign(buffer, ops.add(ops.multiply(buffer, self.momentum), gradient))
            step = ops.add(gradient, ops.multiply(buffer, self.momentum)) if self.nesterov else buffer
        self.assign_sub(variable, ops.multiply(step, ops.cast(learning_rate, dtype)))

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.initial_decay}  # fmt: skip


class DecoupledAdamW(keras.optimizers.Adam):
    """Adam after a decoupled decay step `p ← p − lr·λ·p`, λ an optimizer variable (module docstring)."""

    def __init__(self, learning_rate: float, weight_decay: float, **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name="decoupled_adamw", **kwargs)
        self.initial_decay = float(weight_decay)

    def build(self, variables: list) -> None:
        if self.built:
            return
        super().build(variables)
        self.decay_variable = _decay_variable(self, self.initial_decay)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        rate = ops.multiply(ops.cast(learning_rate, dtype), ops.cast(self.decay_variable, dtype))
        self.assign_sub(variable, ops.multiply(variable, rate))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight_decay": self.initial_decay}


def make(trainer: Any) -> keras.optimizers.Optimizer:
    """The optimizer `trainer.optimizer` names, at the rate of epoch 0 (`recipe.learning_rate`); under
    mixed_float16 wrapped in loss scaling (float16 gradients underflow without it)."""
    rate = recipe.learning_rate(trainer, 0)
    name = trainer.get("optimizer", "adam")
    optimizer: keras.optimizers.Optimizer
    if name == "sgd":
        optimizer = CoupledSGD(rate, trainer.momentum, trainer.nesterov, trainer.weight_decay)
    elif name == "adamw":
        optimizer = DecoupledAdamW(rate, trainer.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=rate)
    if trainer.precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
