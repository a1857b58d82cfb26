"""The fused loop against the one-step path and against plain reference loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_charrnn import bptt, data, loop, optim
from jax_charrnn.config import TrainConfig

from helpers import (NOT_STRICT_SAFE, TINY_TEXT, assert_trees_close, call_windows, epoch_windows,
                     strict_x64)

pytestmark = pytest.mark.usefixtures("strict_promotion")


def _setup(**overrides):
  """(config, network, optimiser, vocabulary, inputs, targets) on the tiny text."""
  cfg = TrainConfig(hidden_size=16, seq_length=10, **overrides)
  vocab = data.Vocab.from_text(TINY_TEXT)
  inputs, targets = data.stream_chunks(vocab.encode(TINY_TEXT), cfg.seq_length, cfg.batch_size)
  tx = loop.make_optimizer(cfg, inputs.shape[0])
  return (cfg, loop.build_model(cfg, vocab.size), tx, vocab, jnp.asarray(inputs),
          jnp.asarray(targets))


def _stepper(cfg, net, tx, inputs, targets):
  """One jitted call per update: step(state) reads the window of the state's update."""
  step = loop.make_train_step(cfg, net, tx, len(inputs))
  epoch = jnp.asarray(epoch_windows(inputs, targets))
  return lambda state: step(state, epoch[int(state.step) % len(epoch)])


def _fused(cfg, net, tx, inputs, targets, max_steps):
  """The fused loop: run(state, k) runs k updates from the state's update, reading the
  windows a call from there reads (as the trainer's feed gives them)."""
  run = loop.make_run_steps(cfg, net, tx, max_steps, len(inputs))
  return lambda state, k: run(state, call_windows(inputs, targets, int(state.step), max_steps), k)


def _reference(cfg, net, tx, inputs, targets, n):
  """The course's loop, written out on parameter trees: e += T, h carried and reset each epoch,
  best kept. The gradient and the optax step are jitted; the bookkeeping is plain Python."""
  state = loop.init_state(cfg, net, tx)

  @jax.jit
  def grads_and_update(params, opt_state, h, x, y):
    (loss, h_next), g = bptt.loss_and_grads(net, params, h, x, y, cfg.loss_reduction)
    updates, opt_state = tx.update(g, opt_state, params)
    return loss, h_next, optax.apply_updates(params, updates), opt_state

  params, opt_state, h = state.params, tx.init(state.params), state.carry
  smooth, best, best_params, best_step, losses = None, np.inf, None, -1, []
  for step in range(n):
    e = step % inputs.shape[0]
    if e == 0:
      h = jax.tree.map(jnp.zeros_like, h)
    loss, h_next, new_params, opt_state = grads_and_update(params, opt_state, h, inputs[e],
                                                           targets[e])
    loss = float(loss)
    smooth = loss if smooth is None else 0.999 * smooth + 0.001 * loss
    if smooth < best:
      best, best_params, best_step = smooth, params, step
    params, h = new_params, h_next
    losses.append(loss)
  return params, h, smooth, best, best_params, best_step, losses


@pytest.mark.parametrize("batch_size", [1, 3])
def test_fused_and_one_step_equal_the_reference_across_an_epoch_boundary(batch_size):
  """Training is chaotic (float32 rounding differences grow ~1e3x in 20 steps), so
  trajectories are compared in float64 (where 73 steps still grow 1e-16 to ~1e-8)."""
  with strict_x64():
    cfg, net, tx, vocab, inputs, targets = _setup(batch_size=batch_size, dtype="float64")
    n = inputs.shape[0] * 2 + 3  # two epoch boundaries (the carry reset twice)
    ref_params, ref_h, ref_smooth, ref_best, ref_best_params, ref_best_step, ref_losses = \
        _reference(cfg, net, tx, inputs, targets, n)

    state = loop.init_state(cfg, net, tx)
    step = _stepper(cfg, net, tx, inputs, targets)
    one, one_losses = state, []
    for _ in range(n):
      one, m = step(one)
      one_losses.append(float(m.loss))

    run = _fused(cfg, net, tx, inputs, targets, 8)  # n is not a multiple of 8
    fused, fused_losses = state, []
    while int(fused.step) < n:
      k = min(8, n - int(fused.step))
      fused, m = run(fused, k)
      fused_losses += np.asarray(m.loss[:k]).tolist()
      assert np.isnan(np.asarray(m.loss[k:])).all()

    for got, losses in ((one, one_losses), (fused, fused_losses)):
      assert int(got.step) == n
      np.testing.assert_allclose(losses, ref_losses, rtol=1e-7)
      assert_trees_close(got.params, ref_params, rtol=1e-6, atol=1e-9)
      assert_trees_close(got.carry, ref_h, rtol=1e-6, atol=1e-9)
      np.testing.assert_allclose(got.smooth_loss, ref_smooth, rtol=1e-9)
      np.testing.assert_allclose(got.best_loss, ref_best, rtol=1e-9)
      assert int(got.best_step) == ref_best_step
      assert_trees_close(got.best_params, ref_best_params, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("clip_mode", ["elementwise", "global_norm"])
@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
def test_fused_loop_equals_a_plain_tree_loop_for_every_optimizer(optimizer, clip_mode):
  """The fused loop ravels the parameters into one vector only for elementwise optimisers
  (optim.ELEMENTWISE); for every optimiser offered, and either clipping, it must train
  exactly as a plain loop of tx.update on parameter trees. The global norm of one vector is
  the tree's (a clip of 0.5 is active here: the gradients' norms run 3-12 over these 30
  updates; the first one's is checked)."""
  with strict_x64(strict=optimizer not in NOT_STRICT_SAFE):
    cfg, net, tx, vocab, inputs, targets = _setup(
        dtype="float64", optimizer=optimizer, learning_rate=0.01,
        weight_decay=0.1 if optimizer == "adamw" else 0.0, clip_mode=clip_mode,
        clip=0.5 if clip_mode == "global_norm" else 5.0)
    n = 30
    state = loop.init_state(cfg, net, tx)
    _, first = bptt.loss_and_grads(net, state.params, state.carry, inputs[0], targets[0],
                                   cfg.loss_reduction)
    assert float(optax.tree.norm(first)) > 2.0
    ref_params = _reference(cfg, net, tx, inputs, targets, n)[0]
    fused, _ = _fused(cfg, net, tx, inputs, targets, n)(loop.init_state(cfg, net, tx), n)
    assert_trees_close(fused.params, ref_params, rtol=1e-9, atol=1e-12)
  assert loop.uses_flat_vector(cfg) == (optimizer != "adamw")


def test_fused_equals_one_step_in_float32():
  cfg, net, tx, vocab, inputs, targets = _setup(batch_size=2)
  state = loop.init_state(cfg, net, tx)
  one = state
  step = _stepper(cfg, net, tx, inputs, targets)
  for _ in range(40):
    one, _ = step(one)
  fused, _ = _fused(cfg, net, tx, inputs, targets, 40)(state, 40)
  # The same update function, compiled inside or outside the loop: float32
  # rounding may differ slightly, and 40 chaotic steps amplify it.
  assert_trees_close(one.params, fused.params, rtol=1e-3, atol=1e-5)


def test_best_params_are_a_copy_not_a_reference():
  cfg, net, tx, vocab, inputs, targets = _setup(best_metric="loss")
  run = _fused(cfg, net, tx, inputs, targets, 50)
  state, m = run(loop.init_state(cfg, net, tx), 50)
  best_step = int(state.best_step)
  assert 0 <= best_step < 49
  # Replay to the best step: the saved copy equals the parameters *before* that update.
  replay, _ = run(loop.init_state(cfg, net, tx), best_step)
  assert_trees_close(state.best_params, replay.params, rtol=1e-6, atol=1e-7)
  assert float(state.best_loss) == pytest.approx(float(np.nanmin(np.asarray(m.loss))))
  assert not np.allclose(np.asarray(state.best_params.V), np.asarray(state.params.V))


def test_autodiff_and_manual_training_agree():
  with strict_x64():
    cfg, net, tx, vocab, inputs, targets = _setup(dtype="float64", num_layers=2)
    states = []
    for grad in ("manual", "autodiff"):
      c = cfg.replace(grad=grad)
      s, _ = _fused(c, net, tx, inputs, targets, 20)(loop.init_state(c, net, tx), 20)
      states.append(s)
    assert_trees_close(states[0].params, states[1].params, rtol=1e-6, atol=1e-9)


def test_run_steps_is_compiled_once_for_any_step_count():
  cfg, net, tx, vocab, inputs, targets = _setup()
  run = loop.make_run_steps(cfg, net, tx, 16, len(inputs))
  state = loop.init_state(cfg, net, tx)
  for k in (16, 3, 1, 7):
    state, _ = run(state, call_windows(inputs, targets, int(state.step), 16), k)
  assert run._cache_size() == 1
  assert int(state.step) == 27


def test_mean_reduction_scales_the_loss():
  cfg, net, tx, vocab, inputs, targets = _setup(loss_reduction="mean", batch_size=2)
  _, m = _stepper(cfg, net, tx, inputs, targets)(loop.init_state(cfg, net, tx))
  assert abs(float(m.loss) - np.log(vocab.size)) < 0.05  # per character at init


def test_a_fresh_state_has_no_best_copy_until_its_first_update():
  cfg, net, tx, vocab, inputs, targets = _setup()
  state = loop.init_state(cfg, net, tx)
  assert int(state.best_step) == -1 and float(state.best_loss) == np.inf
  state, _ = _stepper(cfg, net, tx, inputs, targets)(state)
  assert int(state.best_step) == 0  # the parameters before update 0, with its loss


def test_an_equal_loss_later_does_not_replace_the_best():
  # SGD with a step far below float32's resolution: the parameters never change, and with one
  # chunk per epoch the carry restarts each update, so every update has the same loss. The
  # best copy stays the first one that reached it.
  cfg, net, tx, vocab, inputs, targets = _setup(optimizer="sgd", learning_rate=1e-30,
                                            best_metric="loss")
  step = loop.make_train_step(cfg, net, tx, 1)
  window = jnp.asarray(epoch_windows(inputs[:1], targets[:1])[0])
  state = loop.init_state(cfg, net, tx)
  losses = []
  for _ in range(4):
    state, m = step(state, window)
    losses.append(float(m.loss))
  assert len(set(losses)) == 1 and int(state.best_step) == 0


def test_dropout_draws_the_masks_of_the_run_key_and_step():
  cfg, net, tx, vocab, inputs, targets = _setup(dropout=0.5, num_layers=2, init_sigma=0.5)
  state = loop.init_state(cfg, net, tx)
  _, m = _stepper(cfg, net, tx, inputs, targets)(state)
  x, y = inputs[0], targets[0]
  masks = net.dropout_masks(loop.dropout_key(state.key, state.step), x.shape, jnp.float32)
  with_masks, _ = net.loss(state.params, state.carry, x, y, cfg.loss_reduction, masks)
  without, _ = net.loss(state.params, state.carry, x, y, cfg.loss_reduction)
  np.testing.assert_allclose(float(m.loss), float(with_masks), rtol=1e-5)
  assert abs(float(with_masks) - float(without)) > 1e-3


def test_many_runs_at_once_equal_each_run_alone():
  # The sweep's program: runs stacked on a leading axis, vmapped; run r of the result is run r
  # trained alone (other seeds and learning rates).
  with strict_x64():
    cfg, net, tx, vocab, inputs, targets = _setup(dtype="float64")
    configs = [cfg.replace(seed=1), cfg.replace(seed=2, learning_rate=0.05)]
    # Each run's state starts with its own rate; the one vmapped update reads it from there.
    states = [loop.init_state(c, net, loop.make_optimizer(c, len(inputs))) for c in configs]
    many, metrics = loop.make_run_many(cfg, net, tx, 6, len(inputs))(
        loop.stack(states), call_windows(inputs, targets, 0, 6), 6)
    for r, state in enumerate(states):
      alone, m = _fused(cfg, net, tx, inputs, targets, 6)(state, 6)
      assert_trees_close(loop.unstack(many, r).params, alone.params, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(metrics.loss[r], m.loss, rtol=1e-10)
