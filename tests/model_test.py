import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import model
from jax_charrnn.model import Params


def _params(K=7, m=5, sigma=0.5, seed=0, dtype=jnp.float32):
  p = model.init_params(jax.random.key(seed), K, m, sigma, dtype=dtype)
  k = jax.random.split(jax.random.key(seed + 1), 2)
  return p._replace(b=0.1 * jax.random.normal(k[0], (m,), dtype),
                    c=0.1 * jax.random.normal(k[1], (K,), dtype))


def test_init_shapes_and_scale():
  p = model.init_params(jax.random.key(0), 54, 100)
  assert [x.shape for x in p] == [(100, 54), (100, 100), (54, 100), (100,), (54,)]
  assert all(x.dtype == jnp.float32 for x in p)
  assert float(jnp.abs(p.b).max()) == 0 and float(jnp.abs(p.c).max()) == 0
  assert 0.008 < float(jnp.std(p.W)) < 0.012
  u = model.init_params(jax.random.key(0), 54, 100, dist="uniform")
  assert float(u.W.min()) >= 0 and float(u.W.max()) < 0.01
  with pytest.raises(ValueError):
    model.init_params(jax.random.key(0), 5, 5, dist="cauchy")


def test_forward_scan_equals_python_loop():
  p = _params()
  inputs = jnp.array([1, 3, 3, 0, 6, 2])
  h0 = jnp.linspace(-0.5, 0.5, 5)
  logits, hs = model.forward(p, h0, inputs)
  h = h0
  for t, x in enumerate(inputs):
    a = p.W @ h + p.U[:, x] + p.b      # the course's formula, written out
    h = np.tanh(a)
    np.testing.assert_allclose(hs[t], h, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(logits[t], p.V @ h + p.c, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.rnn_step(p, hs[t - 1] if t else h0, x), h, rtol=1e-6)


def test_batched_forward_equals_one_stream_at_a_time():
  p = _params()
  inputs = jnp.array([[1, 2], [3, 3], [0, 6]])  # [T=3, B=2]
  h0 = jnp.array([[0.1] * 5, [-0.2] * 5])
  logits, hs = model.forward(p, h0, inputs)
  for b in range(2):
    lb, hb = model.forward(p, h0[b], inputs[:, b])
    np.testing.assert_allclose(logits[:, b], lb, rtol=1e-6)
    np.testing.assert_allclose(hs[:, b], hb, rtol=1e-6)


def test_loss_at_init_is_about_T_log_K():
  K, T = 54, 25
  p = model.init_params(jax.random.key(0), K, 100)
  inputs = jnp.arange(T) % K
  loss, h_last = model.loss(p, jnp.zeros(100), inputs, (inputs + 1) % K)
  assert abs(float(loss) - T * np.log(K)) < 0.05
  assert h_last.shape == (100,)
  mean, _ = model.loss(p, jnp.zeros(100), inputs, (inputs + 1) % K, "mean")
  np.testing.assert_allclose(mean, loss / T, rtol=1e-6)


def test_loss_equals_cross_entropy_by_hand():
  p = _params()
  inputs, targets = jnp.array([1, 2, 4]), jnp.array([2, 4, 0])
  logits, _ = model.forward(p, jnp.zeros(5), inputs)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = -np.log(probs[np.arange(3), targets]).sum()
  np.testing.assert_allclose(model.loss(p, jnp.zeros(5), inputs, targets)[0], expected, rtol=1e-5)


def test_unknown_reduction_is_rejected():
  with pytest.raises(ValueError):
    model.loss(_params(), jnp.zeros(5), jnp.array([1]), jnp.array([2]), "max")


def _known_params(K=4, m=2):
  """Params whose output distribution is softmax(c) whatever the input: V = 0."""
  z = jnp.zeros
  return Params(U=z((m, K)), W=z((m, m)), V=z((K, m)), b=z((m,)),
                c=jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05])))


def test_sample_is_reproducible_for_a_key():
  p = _params()
  a = model.sample(p, jnp.zeros(5), 1, 50, jax.random.key(3))
  b = model.sample(p, jnp.zeros(5), 1, 50, jax.random.key(3))
  c = model.sample(p, jnp.zeros(5), 1, 50, jax.random.key(4))
  assert a.shape == (50,) and a.dtype == jnp.int32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_sample_temperature_zero_is_argmax():
  # An RNN that echoes its input one step later: x -> (x + 1) mod K, by hand.
  K, m = 5, 5
  eye = jnp.eye(K)
  shift = jnp.roll(eye, 1, axis=0)  # row (x+1) of shift @ onehot(x) is 1
  p = Params(U=3.0 * eye, W=jnp.zeros((m, m)), V=10.0 * shift, b=jnp.zeros(m), c=jnp.zeros(K))
  ids = model.sample(p, jnp.zeros(m), 2, 8, jax.random.key(0), temperature=0.0)
  assert ids.tolist() == [3, 4, 0, 1, 2, 3, 4, 0]
  tiny = model.sample(p, jnp.zeros(m), 2, 8, jax.random.key(0), temperature=1e-3)
  assert tiny.tolist() == ids.tolist()


def test_sample_top_p_restricts_to_the_nucleus():
  p = _known_params()
  n = 4000
  ids = np.asarray(model.sample(p, jnp.zeros(2), 0, n, jax.random.key(0), top_p=0.7))
  # Probabilities 0.5, 0.3, 0.15, 0.05: the smallest set holding 0.7 is {0, 1}.
  assert set(ids.tolist()) == {0, 1}
  assert abs((ids == 0).mean() - 0.5 / 0.8) < 0.03
  all_ids = np.asarray(model.sample(p, jnp.zeros(2), 0, n, jax.random.key(0), top_p=1.0))
  freq = np.bincount(all_ids, minlength=4) / n
  np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.025)
  only_top = np.asarray(model.sample(p, jnp.zeros(2), 0, 200, jax.random.key(0), top_p=0.1))
  assert set(only_top.tolist()) == {0}


def test_sample_batched_streams():
  p = _params()
  ids = model.sample(p, jnp.zeros((3, 5)), jnp.array([0, 1, 2]), 10, jax.random.key(0))
  assert ids.shape == (10, 3)


def test_jitted_sample_is_not_retraced_for_new_values():
  p = _params()
  model.sample(p, jnp.zeros(5), 1, 20, jax.random.key(0), 0.5, 0.9)
  before = model.sample._cache_size()
  model.sample(p, jnp.ones(5) * 0.1, 2, 20, jax.random.key(1), 0.7, 0.8)
  assert model.sample._cache_size() == before


def test_sample_top_p_zero_is_greedy_not_garbage():
  p = _known_params()
  ids = model.sample(p, jnp.zeros(2), 0, 50, jax.random.key(0), top_p=0.0)
  assert set(np.asarray(ids).tolist()) == {0}  # the most likely character, always kept
  p = p._replace(c=jnp.log(jnp.array([0.05, 0.3, 0.5, 0.15])))
  ids = model.sample(p, jnp.zeros(2), 0, 50, jax.random.key(0), top_p=0.0)
  assert set(np.asarray(ids).tolist()) == {2}
