"""The fused loop against the one-step path and against a plain reference loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_charrnn import bptt, data, loop
from jax_charrnn.config import TrainConfig

from conftest import TINY_TEXT, assert_trees_close


def _setup(**overrides):
  cfg = TrainConfig(hidden_size=16, seq_length=10, **overrides)
  vocab = data.Vocab.from_text(TINY_TEXT)
  inputs, targets = data.stream_chunks(vocab.encode(TINY_TEXT), cfg.seq_length, cfg.batch_size)
  return cfg, vocab, jnp.asarray(inputs), jnp.asarray(targets)


def _reference(cfg, vocab, inputs, targets, n):
  """The course's loop, written out: e += T, h carried, reset each epoch, best kept."""
  state = loop.init_state(cfg, vocab.size)
  params, tx = state.params, optax.chain(
      optax.clip(cfg.clip), optax.adagrad(cfg.learning_rate, initial_accumulator_value=0.0,
                                          eps=1e-8))
  opt_state = tx.init(params)
  h = jnp.zeros((cfg.batch_size, cfg.hidden_size), state.h.dtype)
  smooth, best, best_params, best_step = None, np.inf, None, -1
  losses = []
  for step in range(n):
    e = step % inputs.shape[0]
    if e == 0:
      h = jnp.zeros_like(h)
    (loss, h_next), g = bptt.loss_and_grads(params, h, inputs[e], targets[e])
    smooth = float(loss) if smooth is None else 0.999 * smooth + 0.001 * float(loss)
    if smooth < best:
      best, best_params, best_step = smooth, params, step
    updates, opt_state = tx.update(g, opt_state, params)
    params = optax.apply_updates(params, updates)
    h = h_next
    losses.append(float(loss))
  return params, h, smooth, best, best_params, best_step, losses


@pytest.fixture()
def x64():
  """Training is chaotic (float32 rounding differences grow ~1e3x in 20 steps), so
  trajectories are compared in float64 (where 73 steps still grow 1e-16 to ~1e-8)."""
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("batch_size", [1, 3])
def test_fused_and_one_step_equal_the_reference_across_an_epoch_boundary(batch_size, x64):
  cfg, vocab, inputs, targets = _setup(batch_size=batch_size, dtype="float64")
  n = inputs.shape[0] * 2 + 3  # two epoch boundaries (hidden state reset twice)
  ref_params, ref_h, ref_smooth, ref_best, ref_best_params, ref_best_step, ref_losses = \
      _reference(cfg, vocab, inputs, targets, n)

  state = loop.init_state(cfg, vocab.size)
  step = loop.make_train_step(cfg)
  one = state
  one_losses = []
  for _ in range(n):
    one, m = step(one, inputs, targets)
    one_losses.append(float(m.loss))

  run = loop.make_run_steps(cfg, max_steps=8)  # n is not a multiple of 8
  fused, fused_losses = state, []
  while int(fused.step) < n:
    k = min(8, n - int(fused.step))
    fused, m = run(fused, inputs, targets, k)
    fused_losses += np.asarray(m.loss[:k]).tolist()
    assert np.isnan(np.asarray(m.loss[k:])).all()

  for got, losses in ((one, one_losses), (fused, fused_losses)):
    assert int(got.step) == n
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-7)
    assert_trees_close(got.params, ref_params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.h, ref_h, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.smooth_loss, ref_smooth, rtol=1e-9)
    np.testing.assert_allclose(got.best_loss, ref_best, rtol=1e-9)
    assert int(got.best_step) == ref_best_step
    assert_trees_close(got.best_params, ref_best_params, rtol=1e-6, atol=1e-9)


def test_fused_equals_one_step_in_float32():
  cfg, vocab, inputs, targets = _setup(batch_size=2)
  state = loop.init_state(cfg, vocab.size)
  one = state
  step = loop.make_train_step(cfg)
  for _ in range(40):
    one, _ = step(one, inputs, targets)
  fused, _ = loop.make_run_steps(cfg, 40)(state, inputs, targets, 40)
  # The same update function, compiled inside or outside the loop: float32
  # rounding may differ slightly, and 40 chaotic steps amplify it.
  assert_trees_close(one.params, fused.params, rtol=1e-3, atol=1e-5)


def test_best_params_are_a_copy_not_a_reference():
  cfg, vocab, inputs, targets = _setup(best_metric="loss")
  run = loop.make_run_steps(cfg, max_steps=50)
  state, m = run(loop.init_state(cfg, vocab.size), inputs, targets, 50)
  best_step = int(state.best_step)
  assert 0 <= best_step < 49
  # Replay to the best step: the saved copy equals the parameters *before* that update.
  replay, _ = run(loop.init_state(cfg, vocab.size), inputs, targets, best_step)
  assert_trees_close(state.best_params, replay.params, rtol=1e-6, atol=1e-7)
  assert float(state.best_loss) == pytest.approx(float(np.nanmin(np.asarray(m.loss))))
  assert not np.allclose(np.asarray(state.best_params.W), np.asarray(state.params.W))


def test_autodiff_and_manual_training_agree(x64):
  cfg, vocab, inputs, targets = _setup(dtype="float64")
  states = []
  for grad in ("manual", "autodiff"):
    c = cfg.replace(grad=grad)
    s, _ = loop.make_run_steps(c, 20)(loop.init_state(c, vocab.size), inputs, targets, 20)
    states.append(s)
  assert_trees_close(states[0].params, states[1].params, rtol=1e-6, atol=1e-9)


def test_run_steps_is_compiled_once_for_any_step_count():
  cfg, vocab, inputs, targets = _setup()
  run = loop.make_run_steps(cfg, max_steps=16)
  state = loop.init_state(cfg, vocab.size)
  for k in (16, 3, 1, 7):
    state, _ = run(state, inputs, targets, k)
  assert run._cache_size() == 1
  assert int(state.step) == 27


def test_mean_reduction_scales_the_loss():
  cfg, vocab, inputs, targets = _setup(loss_reduction="mean", batch_size=2)
  state, m = loop.make_train_step(cfg)(loop.init_state(cfg, vocab.size), inputs, targets)
  assert abs(float(m.loss) - np.log(vocab.size)) < 0.05  # per character at init
