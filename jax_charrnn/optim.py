"""The optimiser: elementwise gradient clipping, then AdaGrad (or Adam / RMSProp), via optax.

The course's AdaGrad is

  g <- clip(g, -5, 5);   G <- G + g^2;   theta <- theta - eta * g / sqrt(G + 1e-8)

which is `optax.chain(optax.clip(5), optax.adagrad(eta, initial_accumulator_value=0,
eps=1e-8))`. optax's own defaults (accumulator 0.1, eps 1e-7) are a different
optimiser: the first update would differ by up to 0.099 per parameter.

The learning rate is injected as optimiser state (`optax.inject_hyperparams`),
so that it is logged from the state and so that a sweep can give every run
its own rate inside one vmapped program.
"""

from __future__ import annotations

import optax

from jax_charrnn.config import TrainConfig

ADAGRAD_EPS = 1e-8  # inside the square root, as in the course


def _chain(learning_rate, *, optimizer: str, clip: float) -> optax.GradientTransformation:
  if optimizer == "adagrad":
    opt = optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=ADAGRAD_EPS)
  elif optimizer == "adam":
    opt = optax.adam(learning_rate)
  elif optimizer == "rmsprop":
    opt = optax.rmsprop(learning_rate)
  else:
    raise ValueError(f"unknown optimizer {optimizer!r}")
  return optax.chain(optax.clip(clip), opt)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """clip(config.clip) then config.optimizer with config.learning_rate (in the state)."""
  return optax.inject_hyperparams(_chain, static_args=("optimizer", "clip"))(
      learning_rate=config.learning_rate, optimizer=config.optimizer, clip=config.clip)


def learning_rate(opt_state) -> float:
  """The learning rate held in an optimiser state made by `make_optimizer`."""
  return opt_state.hyperparams["learning_rate"]
