"""The optimiser: elementwise gradient clipping, then AdaGrad (or another optax optimiser).

The course's AdaGrad is

  g <- clip(g, -5, 5);   G <- G + g^2;   theta <- theta - eta * g / sqrt(G + 1e-8)

which is `optax.chain(optax.clip(5), optax.adagrad(eta, initial_accumulator_value=0,
eps=1e-8))`. optax's own defaults (accumulator 0.1, eps 1e-7) are a different
optimiser: the first update would differ by up to 0.099 per parameter.

The learning rate is injected as optimiser state (`optax.inject_hyperparams`),
so that it is logged from the state and so that a sweep can give every run
its own rate inside one vmapped program.

To add an optimiser: one entry in `_MAKERS`, and, if it treats every number on
its own (no per-tensor norms, shapes or masks), its name in `ELEMENTWISE`.
"""

from __future__ import annotations

from typing import Callable

import jax
import optax

ADAGRAD_EPS = 1e-8  # inside the square root, as in the course


def _matrices(params):
  """adamw's mask: decay the weight matrices, not the biases (as nanoGPT does)."""
  return jax.tree.map(lambda x: x.ndim >= 2, params)


_MAKERS: dict[str, Callable[[float, float], optax.GradientTransformation]] = {
    "adagrad": lambda lr, wd: optax.adagrad(lr, initial_accumulator_value=0.0, eps=ADAGRAD_EPS),
    "adam": lambda lr, wd: optax.adam(lr),
    "rmsprop": lambda lr, wd: optax.rmsprop(lr),
    "sgd": lambda lr, wd: optax.sgd(lr),
    "adamw": lambda lr, wd: optax.adamw(lr, weight_decay=wd, mask=_matrices),
}
OPTIMIZERS = tuple(_MAKERS)

# Optimisers whose update of each number depends only on that number's own
# gradient and state. Only these may run on the parameters raveled into one
# flat vector (loop.py's fast path): for them the numbers are the same either
# way. adamw is not here: its mask tells matrices from biases by their shapes,
# which a flat vector has lost.
ELEMENTWISE = frozenset({"adagrad", "adam", "rmsprop", "sgd"})


def _chain(learning_rate, *, optimizer: str, clip: float,
           weight_decay: float) -> optax.GradientTransformation:
  if optimizer not in _MAKERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  return optax.chain(optax.clip(clip), _MAKERS[optimizer](learning_rate, weight_decay))


def make_optimizer(optimizer: str, learning_rate: float, clip: float,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """clip (elementwise, to [-clip, clip]) then `optimizer`, the learning rate in the state."""
  return optax.inject_hyperparams(_chain, static_args=("optimizer", "clip", "weight_decay"))(
      learning_rate=learning_rate, optimizer=optimizer, clip=clip, weight_decay=weight_decay)


def learning_rate(opt_state) -> float:
  """The learning rate held in an optimiser state made by `make_optimizer`."""
  return opt_state.hyperparams["learning_rate"]


def with_learning_rate(opt_state, value):
  """The optimiser state with its learning rate replaced (an array of the same shape)."""
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": value})
