"""The hand-derived BPTT against jax.grad and against finite differences, at every depth."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import bptt, cells, data, gradcheck, model
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Model

from helpers import strict_x64

pytestmark = pytest.mark.usefixtures("strict_promotion")
RNN = cells.get("rnn")


def _case(K, m, T, B, seed, layers=1, repeat=False, nonzero_h0=True, dtype=np.float64,
          sigma=0.3):
  """A network with random weights and biases, a chunk, and a carry (NumPy draws, so that
  setting up a case compiles nothing)."""
  net = Model(RNN, vocab_size=K, hidden_size=m, num_layers=layers)
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0)))
  p = jax.tree.map(lambda s: jnp.asarray((sigma if len(s.shape) > 1 else 0.1)
                                         * rng.standard_normal(s.shape), dtype), shapes)
  shape = (T,) if B is None else (T, B)
  inputs = rng.integers(0, K, shape)
  if repeat:  # the same character again and again: catches .set where .at[].add is needed
    inputs = np.full(shape, 2)
    inputs[0] = 1
  targets = np.roll(inputs, -1, axis=0)
  carry0 = net.zero_carry(() if B is None else (B,), dtype)
  if nonzero_h0:
    carry0 = jax.tree.map(lambda c: jnp.asarray(0.5 * np.tanh(rng.standard_normal(c.shape)),
                                                dtype), carry0)
  return net, p, carry0, jnp.asarray(inputs, jnp.int32), jnp.asarray(targets, jnp.int32)


def _rel(a, b):
  return gradcheck.relative_error(a, b, eps=1e-30)


def _value_and_grads(net, p, c, x, y, reduction):
  manual = jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(net, p, c, x, y, reduction)
  auto = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(
      p, c, x, y, reduction)
  return manual, auto


CASES = [(T, B, repeat, r) for T, B, repeat, r in itertools.product([1, 25], [None, 4],
                                                                     [False, True], ["sum", "mean"])
         if (B is None) == (r == "sum") or repeat]  # 12 of the 16: every pair of choices


@pytest.mark.parametrize("T,B,repeat,reduction", CASES)
def test_manual_equals_jax_grad_float64(T, B, repeat, reduction):
  with strict_x64():
    m = 3 if T == 1 else 8
    net, p, c, x, y = _case(K=6, m=m, T=T, B=B, seed=T * 10 + m, repeat=repeat)
    ((l1, c1), g1), ((l2, c2), g2) = _value_and_grads(net, p, c, x, y, reduction)
    assert jax.tree.structure(g1) == jax.tree.structure(g2)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    np.testing.assert_allclose(c1[0], c2[0], rtol=1e-12)
    for (name, a), (_, b) in zip(model.named_leaves(g1), model.named_leaves(g2)):
      assert _rel(a, b) < 1e-10, name


@pytest.mark.parametrize("layers,T,B,reduction", [(2, 1, None, "sum"), (2, 9, 3, "mean"),
                                                  (3, 6, None, "sum")])
def test_stacked_layers_manual_equals_jax_grad(layers, T, B, reduction):
  with strict_x64():
    net, p, c, x, y = _case(K=7, m=5, T=T, B=B, seed=layers, layers=layers)
    ((l1, c1), g1), ((l2, c2), g2) = _value_and_grads(net, p, c, x, y, reduction)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    for k in range(layers):
      np.testing.assert_allclose(c1[k], c2[k], rtol=1e-12)
    for (name, a), (_, b) in zip(model.named_leaves(g1), model.named_leaves(g2)):
      assert _rel(a, b) < 1e-10, name


def test_repeated_input_gradient_accumulates_in_one_column():
  with strict_x64():
    net, p, c, x, y = _case(K=6, m=4, T=5, B=None, seed=1, repeat=True)
    _, g = jax.jit(bptt.loss_and_grads, static_argnums=0)(net, p, c, x, y)
    dU = g.layers[0].U
    assert float(jnp.abs(dU[:, 2]).sum()) > 0
    np.testing.assert_array_equal(dU[:, np.array([0, 3, 4, 5])], 0)


@pytest.mark.parametrize("T,B,zero_h0,layers", [(1, None, False, 1), (25, None, True, 1),
                                                (25, None, False, 1), (7, 3, False, 1),
                                                (6, 2, False, 2)])
def test_both_equal_finite_differences(T, B, zero_h0, layers):
  with strict_x64():
    net, p, c, x, y = _case(K=7, m=6, T=T, B=B, seed=3, nonzero_h0=not zero_h0, layers=layers)
    rows = gradcheck.check(net, p, gradcheck.Chunk(c, x, y))
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert r.manual_vs_numerical < 1e-6, r
    assert r.autodiff_vs_numerical < 1e-6, r
  assert [r.name for r in rows] == [n for n, _ in model.named_leaves(p)]


def test_three_way_check_on_real_text_at_m_100():
  """The course's setting: m = 100, a real 25-character chunk, sigma = 0.01."""
  text = data.builtin_corpus()[:20000]
  vocab = data.Vocab.from_text(text)
  rows = gradcheck.check_text(text, vocab, TrainConfig(), chunk_index=7, random_carry=True,
                              options=gradcheck.Options(entries=150))
  assert [r.name for r in rows] == ["U", "W", "b", "V", "c"]
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert max(r.manual_vs_numerical, r.autodiff_vs_numerical) < 1e-6, r


def test_float32_agrees_with_float64():
  with strict_x64():
    net, p64, c64, x, y = _case(K=20, m=16, T=25, B=None, seed=5, sigma=0.2)
    _, g64 = jax.jit(bptt.loss_and_grads, static_argnums=0)(net, p64, c64, x, y)
    g64 = [np.asarray(a) for _, a in model.named_leaves(g64)]
  to32 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), t)
  p32, c32 = to32(p64), to32(c64)
  x, y = jnp.asarray(x, jnp.int32), jnp.asarray(y, jnp.int32)
  (l32, _), g32 = jax.jit(bptt.loss_and_grads, static_argnums=0)(net, p32, c32, x, y)
  _, a32 = jax.jit(jax.value_and_grad(net.loss, has_aux=True))(p32, c32, x, y)
  assert l32.dtype == jnp.float32 and g32.layers[0].W.dtype == jnp.float32
  for (name, a), (_, b), c in zip(model.named_leaves(g32), model.named_leaves(a32), g64):
    assert _rel(a, c) < 1e-5, name
    assert _rel(a, b) < 1e-5, name


def test_jitted_loss_and_grads_is_not_retraced():
  traces = []
  net, p, c, x, y = _case(K=6, m=4, T=5, B=None, seed=0, dtype=np.float32)

  def counted(*args):
    traces.append(1)
    return bptt.loss_and_grads(net, *args)

  f = jax.jit(counted)
  f(p, c, x, y)
  f(jax.tree.map(lambda a: a * 2, p), jax.tree.map(lambda a: a + 0.1, c), (x + 1) % 6, y)
  assert len(traces) == 1


def test_a_cell_without_hand_bptt_is_a_clear_error():
  net = Model(dataclasses.replace(RNN, name="no_backward", backward=None), 5, 3)
  p = net.init(jax.random.key(0))
  with pytest.raises(ValueError, match="no hand-derived BPTT"):
    bptt.loss_and_grads(net, p, net.zero_carry(), jnp.array([1, 2]), jnp.array([2, 3]))


def test_relative_error_formula():
  a, b = np.array([3.0, 4.0]), np.array([3.0, 4.0 + 1e-3])
  expected = 1e-3 / (5.0 + np.hypot(3, 4 + 1e-3))
  assert abs(gradcheck.relative_error(a, b) - expected) < 1e-15
  assert gradcheck.relative_error(np.zeros(2), np.zeros(2)) == 0.0
  # the eps floor keeps tiny gradients from dividing by zero
  assert gradcheck.relative_error(np.array([1e-9]), np.array([0.0]), eps=1e-6) == pytest.approx(1e-3)


def test_a_nan_error_never_passes():
  row = gradcheck.Row("W", (2, 2), 1e-17, float("nan"), 1e-9, 4)
  assert not gradcheck.all_pass([row], 1e-6)
  assert gradcheck.all_pass([dataclasses.replace(row, manual_vs_numerical=1e-9)], 1e-6)
