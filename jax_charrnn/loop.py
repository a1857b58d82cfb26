"""One training update, and the ways to run it: one jitted call per update, many, or many runs.

Everything that changes during training lives in one pytree, `TrainState`;
it is what a checkpoint holds. The optimiser is made once per run
(`make_optimizer`, with the run's length known, as Flax's TrainState takes its
`tx`) and handed to `init_state` and to `make_update`, which builds the one
pure function that owns the maths of an update:

  chunk s of the epoch  ->  loss and gradients (hand BPTT or jax.grad)
                        ->  clip + optimiser (optax)  ->  smooth loss, best so far.

`make_train_step` jits it as it is (one call per update); `make_run_steps`
jits a `lax.fori_loop` over it, so that one call runs up to `max_steps`
consecutive updates and the host only wakes up when it has something to do
(log, sample, checkpoint); `make_run_many` vmaps that over independent runs
(sweeps). All call the same update, so they agree.

An update reads one *window*: int32 [T + 1, B], its chunk of T symbols in each
of B streams and, shifted by one, their targets (walk.py); a call reads
`windows` [max_steps, T + 1, B], the windows of its updates in order, which
the host reads from the text and puts on the device a call ahead (programs.py):
the device never holds more of the text than that. Update number `step` is at
position `step % steps_per_epoch` of the walk; at position 0 (a new epoch) the
carry restarts from zero.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from jax_charrnn import bptt, cells, optim
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.model import Model, Params


class TrainState(NamedTuple):
  """All that changes during training (B streams; carry leaves [B, ...])."""

  params: Params
  opt_state: Any           # the optax state (clip + optimiser, learning rate inside)
  carry: Any               # the network's carry into the next chunk (one per layer)
  step: jax.Array          # int32 [], updates done so far
  smooth_loss: jax.Array   # float [], 0.999 * smooth + 0.001 * loss
  best_loss: jax.Array     # float [], lowest value of the best metric so far (inf: none)
  best_step: jax.Array     # int32 [], the update that reached it (-1: none)
  best_params: Params      # a copy of the parameters that reached it
  best_carry: Any          # the carry after that chunk
  best_x: jax.Array        # int32 [B], the character that followed that chunk
  key: jax.Array           # uint32 [2], raw PRNG key data for sampling


class StepMetrics(NamedTuple):
  loss: jax.Array          # the chunk's loss, before the update
  smooth_loss: jax.Array


def build_model(config: TrainConfig, vocab_size: int) -> Model:
  """The network `config` describes, for a vocabulary of `vocab_size` characters."""
  return Model(cell=cells.get(config.cell), vocab_size=vocab_size,
               hidden_size=config.hidden_size, num_layers=config.num_layers,
               dropout=config.dropout, dropout_mode=config.dropout_mode,
               input_dropout=config.input_dropout, weight_drop=config.weight_drop,
               compute_dtype=config.compute_dtype)


def init_spec(config: TrainConfig) -> InitSpec:
  return InitSpec(sigma=config.init_sigma, dist=config.init_dist,
                  forget_bias=config.forget_bias)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule | None:
  """The learning-rate schedule's factor f(s) for `config` (None: constant, no warm-up).

  The decay spans the run's total updates, `config.total_steps(steps_per_epoch)`; the step
  schedule's "every epoch" (lr_decay_every 0) is steps_per_epoch updates. The one place a run's
  schedule is made: the optimiser (`make_optimizer`) and the rate of any update
  (`learning_rate_at`) both come from here.
  """
  if config.lr_schedule == "constant" and not config.warmup_steps:
    return None
  return optim.schedule(config.lr_schedule, config.total_steps(steps_per_epoch),
                        config.warmup_steps, config.min_lr_ratio, config.lr_decay,
                        config.lr_decay_every or steps_per_epoch, config.lr_decay_after)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """The run's optax chain (see optim.py), made once, with the run's length known: the trainer
  builds it and hands it to `init_state` and the update."""
  return optim.make_optimizer(config.optimizer, config.learning_rate, config.clip,
                              config.weight_decay, config.clip_mode,
                              lr_factor(config, steps_per_epoch))


def learning_rate_at(config: TrainConfig, steps_per_epoch: int, step: int) -> float:
  """The learning rate of update `step` (0-based) of the run `config` describes: eta f(step)."""
  factor = lr_factor(config, steps_per_epoch)
  return config.learning_rate * (1.0 if factor is None else float(factor(step)))


def init_state(config: TrainConfig, net: Model, tx: optax.GradientTransformation) -> TrainState:
  """A fresh state: the cell's initialisation, zero carry, tx's empty optimiser state."""
  dtype = jnp.dtype(config.dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise UserError("dtype float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', "
                    "True) first, or work inside `with jax.enable_x64(True):`.")
  key = jax.random.key(config.seed)
  params = net.init(jax.random.fold_in(key, 0), init_spec(config), dtype)
  carry = net.zero_carry((config.batch_size,), dtype)
  return TrainState(
      params=params,
      opt_state=tx.init(params),
      carry=carry,
      step=jnp.zeros((), jnp.int32),
      smooth_loss=jnp.zeros((), dtype),
      best_loss=jnp.full((), jnp.inf, dtype),
      best_step=jnp.full((), -1, jnp.int32),
      best_params=jax.tree.map(jnp.copy, params),
      best_carry=carry,
      best_x=jnp.zeros((config.batch_size,), jnp.int32),
      key=jax.random.key_data(jax.random.fold_in(key, 1)),
  )


def grad_fn(config: TrainConfig, net: Model) -> Callable[..., tuple[tuple[jax.Array, Any], Params]]:
  """`(params, carry, x, y, masks) -> ((loss, carry), grads)`: hand BPTT ("manual") or jax.grad."""
  reduction = config.loss_reduction
  if config.grad == "manual":
    return lambda p, c, x, y, m: bptt.loss_and_grads(net, p, c, x, y, reduction, m)
  if config.grad == "autodiff":
    vg = jax.value_and_grad(net.loss, has_aux=True)
    return lambda p, c, x, y, m: vg(p, c, x, y, reduction, m)
  raise ValueError(f"unknown gradient {config.grad!r}")


def dropout_key(state_key: jax.Array, step: jax.Array) -> jax.Array:
  """The key of update `step`'s dropout masks: the run's key and the step, so a resumed run
  draws the masks an uninterrupted one would (samples use other keys of the same run key)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state_key), 0xD0), step)


def uses_flat_vector(config: TrainConfig) -> bool:
  """Whether the fused loop may ravel the parameters into one vector (elementwise optimisers)."""
  return config.optimizer in optim.ELEMENTWISE


# ---- the flat-vector trick ----
# Inside the training loop the parameters, their optimiser state and the
# best-so-far copy can each be one vector of all the network's numbers
# (`ravel_pytree`) instead of a tree of arrays: clipping, the optimiser and the
# copy of the best parameters are then one pass over memory each instead of
# one per array (docs/speed.md). That gives the same numbers only for
# elementwise optimisers (optim.ELEMENTWISE); the others run on trees.

def _map_params(fn, tree):
  """Applies fn to every `Params` inside tree (the parameters and optax's per-parameter state)."""
  return jax.tree.map(lambda x: fn(x) if isinstance(x, Params) else x, tree,
                      is_leaf=lambda x: isinstance(x, Params))


def _to_flat(state: TrainState) -> TrainState:
  """The state with every Params tree raveled into one vector."""
  ravel = lambda p: ravel_pytree(p)[0]
  return state._replace(params=ravel(state.params), best_params=ravel(state.best_params),
                        opt_state=_map_params(ravel, state.opt_state))


def _from_flat(flat: TrainState, like: TrainState) -> TrainState:
  """Undoes `_to_flat`; `like` is a state with trees (its values are not used)."""
  unravel = ravel_pytree(like.params)[1]
  opt_state = jax.tree.map(lambda t, f: unravel(f) if isinstance(t, Params) else f,
                           like.opt_state, flat.opt_state, is_leaf=lambda x: isinstance(x, Params))
  return flat._replace(params=unravel(flat.params), best_params=unravel(flat.best_params),
                       opt_state=opt_state)


def _make_inner_update(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                       flat: bool, steps_per_epoch: int):
  """The update on the loop's own layout: `(state, window, unravel) -> (state, metrics)`.

  With `flat`, the state's params, opt_state and best_params are flat vectors
  (`_to_flat`) and `unravel` turns a vector back into a Params tree; without,
  they are trees and `unravel` is the identity.
  """
  loss_and_grads = grad_fn(config, net)
  smoothing = config.smoothing
  track_smooth = config.best_metric == "smooth_loss"
  # The held-out score is the host loop's to compute (every --eval_every updates): with
  # best_metric val_bpc the update keeps no best copy itself (hostloop.keep_best does).
  tracked_here = config.best_metric in ("smooth_loss", "loss")
  ravel = (lambda t: ravel_pytree(t)[0]) if flat else (lambda t: t)

  def update(state: TrainState, window: jax.Array, unravel):
    x, y = window[:-1], window[1:]                               # [T, B]: inputs, targets
    new_epoch = state.step % steps_per_epoch == 0                # the carry restarts from zero
    carry = jax.tree.map(lambda c: jnp.where(new_epoch, jnp.zeros_like(c), c), state.carry)

    masks = None
    if net.regularised:  # fresh masks every update, from the run's key and the step
      masks = net.dropout_masks(dropout_key(state.key, state.step), x.shape,
                                state.smooth_loss.dtype)
    (loss, carry_last), grads = loss_and_grads(unravel(state.params), carry, x, y, masks)
    updates, opt_state = tx.update(ravel(grads), state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    smooth = jnp.where(state.step == 0, loss, smoothing * state.smooth_loss + (1 - smoothing) * loss)
    metric = smooth if track_smooth else loss
    better = metric < state.best_loss  # False for NaN: a NaN never becomes the best
    if not tracked_here:
      better = jnp.zeros((), bool)
    keep = lambda new, old: jax.tree.map(functools.partial(jnp.where, better), new, old)
    new_state = TrainState(
        params=params,
        opt_state=opt_state,
        carry=carry_last,
        step=state.step + 1,
        smooth_loss=smooth,
        best_loss=keep(metric, state.best_loss),
        best_step=keep(state.step, state.best_step),
        # The parameters that produced this loss: those before the update.
        best_params=keep(state.params, state.best_params),
        best_carry=keep(carry_last, state.best_carry),
        best_x=keep(y[-1], state.best_x),
        key=state.key,
    )
    return new_state, StepMetrics(loss, smooth)

  return update


def _layout(config: TrainConfig):
  """(to_loop, from_loop, unravel_for) for the loop's state layout (flat or trees)."""
  if uses_flat_vector(config):
    return _to_flat, _from_flat, lambda state: ravel_pytree(state.params)[1]
  return (lambda s: s), (lambda s, like: s), (lambda state: (lambda p: p))


def make_update(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                steps_per_epoch: int) -> Callable[[TrainState, jax.Array],
                                                  tuple[TrainState, StepMetrics]]:
  """The pure update `(state, window) -> (state, metrics)` for `config`, the network `net`,
  the optimiser `tx` (`make_optimizer`) and an epoch of `steps_per_epoch` updates.

  Args of the returned function:
    state: the TrainState before the update.
    window: int32 [T + 1, B], the update's window (walk.Corpus.windows).
  """
  to_loop, from_loop, unravel_for = _layout(config)
  inner = _make_inner_update(config, net, tx, uses_flat_vector(config), steps_per_epoch)

  def update(state: TrainState, window: jax.Array):
    looped, metrics = inner(to_loop(state), window, unravel_for(state))
    return from_loop(looped, state), metrics

  return update


def _out_shardings(state_shardings):
  """Keeps the state where it was put (see parallel.py); metrics replicated."""
  if state_shardings is None:
    return None
  replicated = jax.tree.leaves(state_shardings)[0]
  replicated = jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec())
  return state_shardings, StepMetrics(replicated, replicated)


def make_train_step(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                    steps_per_epoch: int, state_shardings=None):
  """`jax.jit(update)`: one call per update (the simple path).

  state_shardings: where the state lives on a device mesh (parallel.py); None
  for one device.
  """
  return jax.jit(make_update(config, net, tx, steps_per_epoch),
                 out_shardings=_out_shardings(state_shardings))


def run_steps_fn(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                 max_steps: int, steps_per_epoch: int):
  """`run(state, windows, num_steps) -> (state, metrics)`, pure (jit or vmap it)."""
  to_loop, from_loop, unravel_for = _layout(config)
  inner = _make_inner_update(config, net, tx, uses_flat_vector(config), steps_per_epoch)

  def run(state: TrainState, windows: jax.Array, num_steps: jax.Array):
    unravel = unravel_for(state)
    empty = jnp.full((max_steps,), jnp.nan, state.smooth_loss.dtype)

    def body(i, carry):
      looped, losses, smooths = carry
      looped, m = inner(looped, windows[i], unravel)
      return looped, losses.at[i].set(m.loss), smooths.at[i].set(m.smooth_loss)

    looped, losses, smooths = lax.fori_loop(0, num_steps, body, (to_loop(state), empty, empty))
    return from_loop(looped, state), StepMetrics(losses, smooths)

  return run


def make_run_steps(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                   max_steps: int, steps_per_epoch: int, state_shardings=None):
  """A jitted `run(state, windows, num_steps) -> (state, metrics)`.

  It runs `num_steps` (<= max_steps, a traced int32, so any count reuses the
  one compiled program) consecutive updates inside one call, update i reading
  windows[i] (int32 [max_steps, T + 1, B]: walk.Corpus.windows(state's step,
  max_steps)). `metrics` holds max_steps entries per field, the first
  num_steps of which are filled. state_shardings: as for `make_train_step`.
  """
  return jax.jit(run_steps_fn(config, net, tx, max_steps, steps_per_epoch),
                 out_shardings=_out_shardings(state_shardings))


def keep_as_best(state: TrainState, metric: jax.Array, next_x: jax.Array) -> TrainState:
  """The state with its current parameters, carry and next characters [B] as the best copy.

  For a best metric the host computes (the held-out score): after `state.step`
  updates the parameters scored `metric`; they are those before update number
  `state.step` (0-based), as in the update's own tracking.
  """
  return state._replace(best_loss=jnp.asarray(metric, state.best_loss.dtype),
                        best_step=state.step, best_params=jax.tree.map(jnp.copy, state.params),
                        best_carry=state.carry, best_x=jnp.asarray(next_x, jnp.int32))


def stack(states: list[TrainState]) -> TrainState:
  """Independent runs' states as one state with a leading run axis (for `make_run_many`)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def unstack(states: TrainState, r: int) -> TrainState:
  """Run r of a stacked state."""
  return jax.tree.map(lambda x: x[r], states)


def make_run_many(config: TrainConfig, net: Model, tx: optax.GradientTransformation,
                  max_steps: int, steps_per_epoch: int, run_sharding=None):
  """`make_run_steps` for R independent runs at once: `jax.vmap` over a leading run axis.

  The runs share the data and every static setting; what lives in the state
  (parameters, the learning rate in the optimiser state, the seed's initial
  weights) may differ. run_sharding: a sharding that splits the run axis
  over devices (see `parallel.run_sharding`), or None for one device.
  """
  program = jax.vmap(run_steps_fn(config, net, tx, max_steps, steps_per_epoch),
                     in_axes=(0, None, None))
  return jax.jit(program, out_shardings=run_sharding)
