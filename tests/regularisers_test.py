"""AWD-LSTM's regularisers: locked (variational) dropout, input dropout and weight drop.

Hand BPTT == jax.grad with the same masks (<= 1e-10 in float64) and both == centred finite
differences, for every cell and 1-3 layers; the masks' shapes and values; a run with only
dropout draws the masks it drew before the others existed; a run stopped and resumed equals
one run in one go; settings that would change nothing are refused."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import bptt, cells, gradcheck, model, trainer
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model

from helpers import StopAt, assert_trees_close, strict_x64

CELLS = ("rnn", "lstm", "gru")
ALL = dict(dropout=0.3, input_dropout=0.25, weight_drop=0.4)


def _case(cell, layers, mode, T=6, B=2, K=7, H=4, seed=3, **regs):
  """float64 parameters (PyTorch's init), a random carry, a chunk and its masks."""
  regs = regs or ALL
  net = Model(cells.get(cell), vocab_size=K, hidden_size=H, num_layers=layers,
              dropout_mode=mode, **regs)
  p = net.init(jax.random.key(seed), InitSpec(dist="pytorch"), jnp.float64)
  rng = np.random.default_rng(seed)
  carry = jax.tree.map(lambda c: jnp.asarray(0.5 * np.tanh(rng.standard_normal(c.shape)),
                                             jnp.float64), net.zero_carry((B,), jnp.float64))
  x = jnp.asarray(rng.integers(0, K, (T, B)), jnp.int32)
  y = jnp.asarray(rng.integers(0, K, (T, B)), jnp.int32)
  masks = net.dropout_masks(jax.random.key(seed + 1), (T, B), jnp.float64)
  return net, p, carry, x, y, masks


def _worst(g1, g2):
  return max(gradcheck.relative_error(a, b, eps=1e-30)
             for (_, a), (_, b) in zip(model.named_leaves(g1), model.named_leaves(g2)))


def _grads(net, p, carry, x, y, masks, reduction="mean"):
  (l1, _), g1 = jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(net, p, carry, x, y,
                                                                     reduction, masks)
  (l2, _), g2 = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(
      p, carry, x, y, reduction, masks)
  np.testing.assert_allclose(l1, l2, rtol=1e-12)
  assert jax.tree.structure(g1) == jax.tree.structure(g2)
  return g1, g2


@pytest.mark.parametrize("cell,layers,mode", list(itertools.product(CELLS, (1, 2, 3),
                                                                    model.DROPOUT_MODES)))
def test_hand_bptt_equals_jax_grad_with_every_regulariser(cell, layers, mode):
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, layers, mode)
    assert _worst(*_grads(net, p, carry, x, y, masks)) < 1e-10


@pytest.mark.parametrize("regs", [dict(input_dropout=0.3), dict(weight_drop=0.4),
                                  dict(dropout=0.3)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_each_regulariser_alone(cell, regs):
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, 2, "locked", **regs)
    assert _worst(*_grads(net, p, carry, x, y, masks, "sum")) < 1e-10


@pytest.mark.parametrize("cell,layers", list(itertools.product(CELLS, (1, 2, 3))))
def test_three_ways_against_finite_differences(cell, layers):
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, layers, "locked", T=5)
    rows = gradcheck.check(net, p, gradcheck.Chunk(carry, x, y, "mean", masks))
  assert len(rows) == (3 if cell == "rnn" else 4) * layers + 2
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert r.manual_vs_numerical < 1e-6 and r.autodiff_vs_numerical < 1e-6, r


@pytest.mark.parametrize("cell", CELLS)
def test_a_gradient_that_forgets_a_mask_fails(cell):
  """The comparison can fail: hand BPTT without the weight masks (or the input masks) against
  jax.grad with them is far off."""
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, 2, "locked")
    _, good = _grads(net, p, carry, x, y, masks)
    for forgotten in (masks._replace(weights=None), masks._replace(inputs=None)):
      (_, _), bad = bptt.loss_and_grads(net, p, carry, x, y, "mean", forgotten)
      assert _worst(bad, good) > 1e-3


def test_the_masks():
  net = Model(cells.get("lstm"), vocab_size=30, hidden_size=50, num_layers=2, dropout=0.3,
              dropout_mode="locked", input_dropout=0.2, weight_drop=0.5)
  m = net.dropout_masks(jax.random.key(0), (40, 8))
  assert [h.shape for h in m.hidden] == [(40, 8, 50)] * 2 and m.inputs.shape == (40, 8, 30)
  assert [w.shape for w in m.weights] == [(200, 50)] * 2  # W_hh: [4H, H]
  for h in (*m.hidden, m.inputs):  # locked: the same at every t, not across streams
    h = np.asarray(h)
    assert (h == h[:1]).all() and not (h == h[:, :1]).all()
  np.testing.assert_allclose(np.unique(np.asarray(m.weights[0])), [0.0, 2.0])
  np.testing.assert_allclose(np.unique(np.asarray(m.inputs)), [0.0, 1 / 0.8], rtol=1e-6)
  assert abs(float((np.asarray(m.weights[1]) == 0).mean()) - 0.5) < 0.02
  per_step = dataclasses.replace(net, dropout_mode="per_step")
  h = np.asarray(per_step.dropout_masks(jax.random.key(0), (40, 8)).hidden[0])
  assert not (h == h[:1]).all()  # per step: masks differ over t


def test_dropout_alone_draws_the_masks_it_drew_before():
  """Today's runs with --dropout draw exactly their old masks (split key, one per layer)."""
  net = Model(cells.get("gru"), vocab_size=9, hidden_size=6, num_layers=3, dropout=0.4)
  key = jax.random.key(5)
  old = tuple(jax.random.bernoulli(k, 0.6, (7, 2, 6)).astype(jnp.float32) / 0.6
              for k in jax.random.split(key, 3))
  m = net.dropout_masks(key, (7, 2))
  assert m.inputs is None and m.weights is None
  for a, b in zip(m.hidden, old):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_drop_changes_training_not_scoring():
  with strict_x64():
    net, p, carry, x, _, masks = _case("lstm", 2, "per_step", weight_drop=0.5)
    plain = net.forward(p, carry, x)[0]
    dropped = net.forward(p, carry, x, masks)[0]
    assert not np.allclose(plain, dropped)
    # The same as running the network on W_hh ⊙ M by hand.
    by_hand = p._replace(layers=tuple(l._replace(W_hh=l.W_hh * m)
                                      for l, m in zip(p.layers, masks.weights)))
    np.testing.assert_allclose(net.forward(by_hand, carry, x)[0], dropped, rtol=1e-13)


@pytest.mark.parametrize("kwargs,message", [
    (dict(dropout_mode="locked"), "dropout_mode locked applies to dropout and input_dropout"),
    (dict(input_dropout=1.0), "input_dropout must be less than 1.0"),
    (dict(weight_drop=-0.1), "weight_drop must be at least 0.0"),
    (dict(dropout_mode="zoneout"), "dropout_mode must be one of per_step, locked"),
])
def test_bad_regulariser_settings_are_refused(kwargs, message):
  with pytest.raises(UserError, match=message):
    TrainConfig(**kwargs)


def test_weight_drop_needs_a_cell_that_names_its_recurrent_weights():
  plain = cells.get("rnn")
  cells.register(cells.Cell("norec", plain.init, plain.zero_carry, plain.output, plain.step,
                            plain.forward, plain.backward))
  try:
    with pytest.raises(UserError, match="weight_drop needs a cell that names"):
      TrainConfig(cell="norec", weight_drop=0.1)
    TrainConfig(cell="norec", dropout=0.1, dropout_mode="locked", input_dropout=0.1)
  finally:
    cells._REGISTRY.pop("norec")


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_a_regularised_run_stopped_and_resumed_equals_one_run(text_file, tmp_path, grad):
  cfg = TrainConfig(data_path=text_file, cell="lstm", num_layers=2, hidden_size=12,
                    seq_length=10, batch_size=2, num_steps=100, steps_per_call=16, log_every=10,
                    sample_every=0, report_every=0, checkpoint_every=0, passage_length=20,
                    report_gradcheck_entries=5, optimizer="adam", learning_rate=0.01,
                    grad=grad, init_dist="pytorch", **ALL, dropout_mode="locked")
  straight = trainer.train(cfg, str(tmp_path / "a"))
  half = str(tmp_path / "b")
  stopped = trainer.train(cfg, half, console=StopAt("step 40/"))
  assert stopped.record.interrupted and 40 <= stopped.record.step < 100
  resumed = trainer.train(cfg, half)
  assert resumed.record.step == 100
  assert_trees_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)
  md = open(f"{half}/report.md", encoding="utf-8").read()
  assert "dropout 0.3 (locked), input dropout 0.25, weight drop 0.4" in md
  assert "FAIL" not in md


def test_the_gradient_check_command_holds_every_mask():
  """gradcheck's flags include the regularisers, and its check passes with all of them."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import data  # pylint: disable=g-import-not-at-top
  assert {"dropout_mode", "input_dropout", "weight_drop"} <= set(gradcheck.SHARED)
  fv = flags.FlagValues()
  gradcheck.define_flags(fv)
  fv(["gradcheck", "--weight_drop=0.5", "--dropout_mode=locked", "--input_dropout=0.2"])
  assert fv["weight_drop"].value == 0.5
  text = "the cat sat on the mat; the dog sat on the log. " * 4
  cfg = TrainConfig(cell="gru", num_layers=2, hidden_size=6, seq_length=8, init_dist="pytorch",
                    dropout=0.3, dropout_mode="locked", input_dropout=0.2, weight_drop=0.5)
  rows = gradcheck.check_text(text, data.Vocab.from_text(text), cfg,
                              options=gradcheck.Options(entries=20))
  assert gradcheck.all_pass(rows, 1e-6) and len(rows) == 4 * 2 + 2
