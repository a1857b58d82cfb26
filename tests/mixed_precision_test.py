"""Mixed precision (--compute_dtype=bfloat16): the hand BPTT of the bfloat16 program against
jax.grad of the same program and against float64 finite differences of the float32 model, for
every cell and depth and the regularisers; the float32 program untouched; the setting's guards,
a run in bfloat16 and its resume.

The bound: bfloat16 keeps 8 significant bits (unit roundoff u = 2^-9, about 2e-3). Each product
rounds its two operands once and sums in float32, so a gradient entry carries a few u of
relative error from each product it passes through (read-out, the cell's recurrent products,
the layer above's); jax.grad also rounds the weights' cotangents to bfloat16 on their way back
to the float32 parameters. Measured: at most 1% here (hand and jax.grad against each other and
against float64). BOUND, 2e-2 (about 10 u), holds with room and still catches a 5% error.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import bptt, cells, precision, trainer
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model

from helpers import small_config, write_text

BOUND = 2e-2
CASES = [("rnn", 1, {}), ("lstm", 2, {}), ("gru", 2, {}),
         ("lstm", 2, {"dropout": 0.25, "weight_drop": 0.2}),
         ("gru", 1, {"input_dropout": 0.1, "dropout": 0.1})]
IDS = [f"{c}-{n}{'-regularised' if r else ''}" for c, n, r in CASES]


def _case(cell, layers, regularisers, K=20, H=32, T=25, B=4):
  net = Model(cells.get(cell), vocab_size=K, hidden_size=H, num_layers=layers,
              compute_dtype="bfloat16", **regularisers)
  params = net.init(jax.random.key(1), InitSpec(dist="pytorch"), jnp.float32)
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.integers(0, K, (T, B)), jnp.int32)
  carry = jax.tree.map(lambda c: jnp.asarray(0.5 * np.tanh(rng.standard_normal(c.shape)),
                                             jnp.float32), net.zero_carry((B,)))
  masks = net.dropout_masks(jax.random.key(3), x.shape) if regularisers else None
  return net, params, (carry, x, jnp.roll(x, -1, axis=0), "mean", masks)


def _rel(a, b):
  return float(np.linalg.norm(np.ravel(a - b)) / max(np.linalg.norm(np.ravel(b)), 1e-30))


def _grads(net, params, chunk):
  hand = jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(net, params, *chunk)
  auto = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(params, *chunk)
  return hand, auto


@pytest.mark.parametrize("cell,layers,regularisers", CASES, ids=IDS)
def test_hand_bptt_equals_jax_grad_of_the_same_mixed_program(cell, layers, regularisers):
  net, params, chunk = _case(cell, layers, regularisers)
  ((loss, carry), hand), ((loss_auto, carry_auto), auto) = _grads(net, params, chunk)
  assert {a.dtype for a in jax.tree.leaves((loss, hand))} == {jnp.dtype(jnp.float32)}
  assert loss == pytest.approx(float(loss_auto), rel=1e-5)
  for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(carry_auto)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
    assert _rel(a, b) <= BOUND, (_rel(a, b), a.shape)
  # And the bfloat16 program is the one computed: its gradients are not the float32 program's.
  (_, exact), _ = _grads(net.full_precision(), params, chunk)
  assert max(_rel(a, b) for a, b in zip(jax.tree.leaves(hand), jax.tree.leaves(exact))) > 1e-4


@pytest.mark.parametrize("cell,layers,regularisers", CASES, ids=IDS)
def test_both_against_float64_finite_differences_of_the_float32_model(cell, layers,
                                                                      regularisers):
  """The float32 model's gradient in float64 (jax.grad), confirmed by central differences
  (L(p + e d) - L(p - e d)) / 2e along three random directions d; the hand and the jax.grad
  gradients of the bfloat16 program within BOUND of it, every parameter."""
  net, params, chunk = _case(cell, layers, regularisers)
  (_, hand), (_, auto) = _grads(net, params, chunk)
  with jax.enable_x64(True):
    as64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    p64, exact = as64(params), net.full_precision()
    c64 = (as64(chunk[0]), chunk[1], chunk[2], "mean", as64(chunk[4]))
    loss = jax.jit(lambda p: exact.loss(p, *c64)[0])
    g64 = jax.jit(jax.grad(loss))(p64)
    rng, eps = np.random.default_rng(4), 1e-5
    for _ in range(3):
      d = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), p64)
      shift = lambda s: jax.tree.map(lambda a, b: a + s * eps * b, p64, d)
      fd = float((loss(shift(1.0)) - loss(shift(-1.0))) / (2 * eps))
      along = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g64),
                                                        jax.tree.leaves(d)))
      assert abs(along - fd) <= 1e-6 * max(abs(fd), 1e-3), (along, fd)
  for g in (hand, auto):
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g64)):
      assert _rel(np.asarray(a, np.float64), np.asarray(b)) <= BOUND


def test_a_wrong_gradient_fails_the_bound():
  net, params, chunk = _case("lstm", 2, {})
  (_, hand), (_, auto) = _grads(net, params, chunk)
  wrong = jax.tree.map(lambda a: a * 1.05, hand)  # every entry 5% off
  assert min(_rel(a, b) for a, b in zip(jax.tree.leaves(wrong), jax.tree.leaves(auto))) > BOUND


def test_float32_products_stay_as_they_were():
  """compute_dtype float32 (the default) leaves the program without a bfloat16 number; bfloat16
  rounds every product's operands to bfloat16 (the products and sums stay float32)."""
  net, params, chunk = _case("gru", 2, {})
  exact = net.full_precision()
  assert Model(cells.get("gru"), 20, 32).compute_dtype == "float32"
  assert exact.compute(params) is params
  text = str(jax.make_jaxpr(lambda p: bptt.loss_and_grads(exact, p, *chunk))(params))
  assert "bf16" not in text
  mixed = str(jax.make_jaxpr(lambda p: bptt.loss_and_grads(net, p, *chunk))(params))
  assert mixed.count("dot_general") == text.count("dot_general") > 0  # the same products
  assert mixed.count("new_dtype=bfloat16") >= mixed.count("dot_general")  # operands rounded
  assert all(jnp.dtype(a.dtype) == jnp.float32 or a.ndim == 2
             for a in jax.tree.leaves(net.compute(params)))


def test_the_setting_is_checked_and_a_cpu_without_bfloat16_units_is_warned_of(tmp_path):
  book = write_text(tmp_path / "book.txt")
  with pytest.raises(UserError, match="compute_dtype=bfloat16 is mixed precision over float32"):
    small_config(book, compute_dtype="bfloat16", dtype="float64")
  without = write_text(tmp_path / "epyc", "processor: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
  with_units = write_text(tmp_path / "xeon", "flags\t\t: fpu avx2 avx512_bf16 amx_bf16\n")
  if jax.default_backend() == "cpu":
    assert "without bfloat16 units" in precision.slow_bfloat16_warning("bfloat16", without)
  assert precision.slow_bfloat16_warning("bfloat16", with_units) == ""
  assert precision.slow_bfloat16_warning("float32", without) == ""
  assert precision.slow_bfloat16_warning("bfloat16", str(tmp_path / "none")) == ""
  assert precision.cpu_flags(with_units) >= {"avx512_bf16", "amx_bf16"}


def test_a_bfloat16_run_trains_keeps_float32_and_refuses_another_compute_dtype(tmp_path):
  book = write_text(tmp_path / "book.txt")
  workdir = str(tmp_path / "run")
  config = small_config(book, cell="lstm", compute_dtype="bfloat16", val_fraction=0.2,
                        eval_every=20)
  result = trainer.train(config, workdir)
  from jax_charrnn import saved  # pylint: disable=g-import-not-at-top
  run = saved.load(workdir, "latest")
  assert run.config.compute_dtype == "bfloat16" and run.net.compute_dtype == "float32"
  assert {a.dtype for a in jax.tree.leaves(run.params)} == {jnp.dtype(jnp.float32)}
  assert np.isfinite(result.record.smooth_loss)
  with pytest.raises(UserError, match="compute_dtype"):
    trainer.train(dataclasses.replace(config, compute_dtype="float32", num_steps=80), workdir)

