"""The hand-derived BPTT against jax.grad and against finite differences."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import bptt, data, gradcheck, model
from jax_charrnn.model import Params


def _case(K, m, T, B, seed, repeat=False, nonzero_h0=True, dtype=jnp.float64, sigma=0.3):
  k = jax.random.split(jax.random.key(seed), 4)
  p = model.init_params(k[0], K, m, sigma, dtype=dtype)
  p = p._replace(b=0.1 * jax.random.normal(k[1], (m,), dtype),
                 c=0.1 * jax.random.normal(k[2], (K,), dtype))
  shape = (T,) if B is None else (T, B)
  inputs = jax.random.randint(k[3], shape, 0, K)
  if repeat:  # the same character again and again: catches .set where .at[].add is needed
    inputs = jnp.full(shape, 2).at[0].set(1)
  targets = jnp.roll(inputs, -1, axis=0)
  h_shape = (m,) if B is None else (B, m)
  h0 = 0.5 * jnp.tanh(jax.random.normal(k[2], h_shape, dtype)) if nonzero_h0 else jnp.zeros(h_shape, dtype)
  return p, h0, inputs, targets


def _rel(a, b):
  return gradcheck.relative_error(a, b, eps=1e-30)


CASES = list(itertools.product([1, 25], [3, 8], [None, 4], [False, True], ["sum", "mean"]))


@pytest.mark.parametrize("T,m,B,repeat,reduction", CASES)
def test_manual_equals_jax_grad_float64(T, m, B, repeat, reduction):
  with jax.enable_x64(True):
    p, h0, x, y = _case(K=6, m=m, T=T, B=B, seed=T * 10 + m, repeat=repeat)
    (l1, h1), g1 = jax.jit(bptt.loss_and_grads, static_argnums=4)(p, h0, x, y, reduction)
    (l2, h2), g2 = jax.jit(jax.value_and_grad(model.loss, has_aux=True), static_argnums=4)(
        p, h0, x, y, reduction)
    assert jax.tree.structure(g1) == jax.tree.structure(g2)
    assert isinstance(g1, Params)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    np.testing.assert_allclose(h1, h2, rtol=1e-12)
    for name in Params._fields:
      assert _rel(getattr(g1, name), getattr(g2, name)) < 1e-10, name


def test_repeated_input_gradient_accumulates_in_one_column():
  with jax.enable_x64(True):
    p, h0, x, y = _case(K=6, m=4, T=5, B=None, seed=1, repeat=True)
    _, g = bptt.loss_and_grads(p, h0, x, y)
    assert float(jnp.abs(g.U[:, 2]).sum()) > 0
    np.testing.assert_array_equal(g.U[:, [0, 3, 4, 5]], 0)


@pytest.mark.parametrize("T,B,zero_h0", [(1, None, False), (25, None, True), (25, None, False),
                                         (7, 3, False)])
def test_both_equal_finite_differences(T, B, zero_h0):
  with jax.enable_x64(True):
    p, h0, x, y = _case(K=7, m=6, T=T, B=B, seed=3, nonzero_h0=not zero_h0)
    rows = gradcheck.check(p, h0, x, y)
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert r.manual_vs_numerical < 1e-6, r
    assert r.autodiff_vs_numerical < 1e-6, r
  assert [r.name for r in rows] == list(Params._fields)


def test_three_way_check_on_real_text_at_m_100():
  """The course's setting: m = 100, a real 25-character chunk, sigma = 0.01."""
  text = data.builtin_corpus()[:20000]
  vocab = data.Vocab.from_text(text)
  rows = gradcheck.check_text(text, vocab, hidden_size=100, seq_length=25, sigma=0.01,
                              chunk_index=7, random_h0=True, entries=300)
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert max(r.manual_vs_numerical, r.autodiff_vs_numerical) < 1e-6, r


def test_float32_agrees_with_float64():
  with jax.enable_x64(True):
    p64, h64, x, y = _case(K=20, m=16, T=25, B=None, seed=5, sigma=0.2)
    _, g64 = bptt.loss_and_grads(p64, h64, x, y)
  p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p64)
  x, y = jnp.asarray(x, jnp.int32), jnp.asarray(y, jnp.int32)
  (l32, _), g32 = jax.jit(bptt.loss_and_grads)(p32, jnp.asarray(h64, jnp.float32), x, y)
  _, a32 = jax.jit(jax.value_and_grad(model.loss, has_aux=True))(p32, jnp.asarray(h64, jnp.float32), x, y)
  assert l32.dtype == jnp.float32 and g32.W.dtype == jnp.float32
  for name in Params._fields:
    assert _rel(getattr(g32, name), getattr(g64, name)) < 1e-5, name
    assert _rel(getattr(g32, name), getattr(a32, name)) < 1e-5, name


def test_jitted_loss_and_grads_is_not_retraced():
  traces = []

  def counted(*args):
    traces.append(1)
    return bptt.loss_and_grads(*args)

  f = jax.jit(counted)
  p, h0, x, y = _case(K=6, m=4, T=5, B=None, seed=0, dtype=jnp.float32)
  f(p, h0, x, y)
  f(jax.tree.map(lambda a: a * 2, p), h0 + 0.1, (x + 1) % 6, y)
  assert len(traces) == 1


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
