"""The optimiser: gradient clipping, then AdaGrad (or another optax optimiser), then the schedule.

The course's AdaGrad is

  g <- clip(g, -5, 5);   G <- G + g^2;   theta <- theta - eta * g / sqrt(G + 1e-8)

which is `optax.chain(optax.clip(5), optax.adagrad(eta, initial_accumulator_value=0,
eps=1e-8))`. optax's own defaults (accumulator 0.1, eps 1e-7) are a different
optimiser: the first update would differ by up to 0.099 per parameter.

The learning rate is injected as optimiser state (`optax.inject_hyperparams`),
so that it is logged from the state and so that a sweep can give every run
its own rate inside one vmapped program.

Clipping (`--clip_mode`): elementwise (the course: each entry to [-clip, clip],
`optax.clip`) or global_norm (`optax.clip_by_global_norm`: all gradients scaled
by min(1, clip / ||g||), ||g|| the norm of every entry of every parameter).

The schedule (`--lr_schedule`) multiplies the optimiser's update by a factor
f(s) of the update number s = 0, 1, ... (so the rate of update s is eta f(s)):

  warm-up (W = --warmup_steps > 0):  f(s) = s / W                  for s < W
  then, with u = s - W, D = max(total - W, 1), r = --min_lr_ratio:
    constant   f = 1
    cosine     f = r + (1 - r) (1 + cos(pi min(u, D) / D)) / 2
    linear     f = 1 - (1 - r) min(u, D) / D
    step       f = max(r, d^floor((u - A) / E)) for u >= A, else 1
               (d = --lr_decay, E = --lr_decay_every, A = --lr_decay_after: char-rnn's)

built from optax's schedules (`schedule`). The base rate eta stays the injected
hyperparameter (a sweep's runs each hold their own; a diverged run is frozen by
setting it to 0); the factor's state counts the updates and keeps the last
factor, so that `learning_rate` reads the rate of the latest update from the
state alone, and a resumed run continues the schedule exactly. The constant
schedule without warm-up adds nothing to the chain (the course's state, bit
for bit).

To add an optimiser: one entry in `_MAKERS`, and, if it treats every number on
its own (no per-tensor norms, shapes or masks), its name in `ELEMENTWISE`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
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


SCHEDULES = ("constant", "cosine", "linear", "step")
CLIP_MODES = ("elementwise", "global_norm")


def schedule(kind: str, total: int, warmup: int = 0, min_ratio: float = 0.0,
             decay: float = 1.0, decay_every: int = 1, decay_after: int = 0) -> optax.Schedule:
  """f(s), the factor of the base rate at update s (the module docstring has the formulas).

  Args:
    kind: one of SCHEDULES.
    total: the run's updates (the decay ends there, at min_ratio).
    warmup: W, updates of linear warm-up from 0 (0: none).
    min_ratio: r, the floor of the decay as a fraction of the base rate.
    decay, decay_every, decay_after: the step schedule's d, E and A (updates after the
      warm-up).
  """
  span = max(total - warmup, 1)
  if kind == "constant":
    after = optax.constant_schedule(1.0)
  elif kind == "cosine":
    after = optax.cosine_decay_schedule(1.0, span, alpha=min_ratio)
  elif kind == "linear":
    after = optax.linear_schedule(1.0, min_ratio, span)
  elif kind == "step":
    after = optax.exponential_decay(1.0, decay_every, decay, transition_begin=decay_after,
                                    staircase=True, end_value=min_ratio if min_ratio else None)
  else:
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {kind!r}")
  if not warmup:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), after], [warmup])


class ScheduleState(NamedTuple):
  count: jax.Array   # int32 [], updates made
  factor: jax.Array  # float [], the factor of the latest update (before any: f(0))


def scale_by_factor(factor: optax.Schedule) -> optax.GradientTransformation:
  """Updates times factor(count), the count and the factor kept in the state."""

  def init(params):
    dtype = jax.tree.leaves(params)[0].dtype
    return ScheduleState(jnp.zeros((), jnp.int32), jnp.asarray(factor(jnp.zeros((), dtype)),
                                                                dtype))

  def update(updates, state, params=None):
    del params
    # optax's schedules mix the count with Python floats: given as a float (exact up to 2^24
    # updates in float32), no integer meets a float.
    dtype = state.factor.dtype
    f = jnp.asarray(factor(state.count.astype(dtype)), dtype)
    updates = jax.tree.map(lambda u: u * f.astype(u.dtype), updates)
    return updates, ScheduleState(optax.safe_int32_increment(state.count), f)

  return optax.GradientTransformation(init, update)


def _clipper(clip_mode: str, clip: float) -> optax.GradientTransformation:
  if clip_mode == "elementwise":
    return optax.clip(clip)
  if clip_mode == "global_norm":
    return optax.clip_by_global_norm(clip)
  raise ValueError(f"clip_mode must be one of {', '.join(CLIP_MODES)}; got {clip_mode!r}")


def _chain(learning_rate, *, optimizer: str, clip: float, weight_decay: float,
           clip_mode: str = "elementwise",
           factor: optax.Schedule | None = None) -> optax.GradientTransformation:
  if optimizer not in _MAKERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  parts = [_clipper(clip_mode, clip), _MAKERS[optimizer](learning_rate, weight_decay)]
  if factor is not None:
    parts.append(scale_by_factor(factor))
  return optax.chain(*parts)


def make_optimizer(optimizer: str, learning_rate: float, clip: float,
                   weight_decay: float = 0.0, clip_mode: str = "elementwise",
                   factor: optax.Schedule | None = None) -> optax.GradientTransformation:
  """clip (elementwise or by the global norm) then `optimizer`, the base learning rate in the
  state, then (if given) the schedule's factor (`schedule`; None: a constant rate)."""
  static = ("optimizer", "clip", "weight_decay", "clip_mode", "factor")
  return optax.inject_hyperparams(_chain, static_args=static)(
      learning_rate=learning_rate, optimizer=optimizer, clip=clip, weight_decay=weight_decay,
      clip_mode=clip_mode, factor=factor)


def base_learning_rate(opt_state):
  """eta, the base learning rate held in an optimiser state made by `make_optimizer` (what a
  sweep sets per run and what freezing a run sets to 0)."""
  return opt_state.hyperparams["learning_rate"]


def learning_rate(opt_state):
  """The learning rate of the latest update: eta times the schedule's factor (eta without a
  schedule; before any update, the first update's)."""
  scheduled = [s for s in opt_state.inner_state if isinstance(s, ScheduleState)]
  base = base_learning_rate(opt_state)
  return base if not scheduled else base * scheduled[0].factor


def with_learning_rate(opt_state, value):
  """The optimiser state with its base learning rate replaced (an array of the same shape)."""
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": value})
