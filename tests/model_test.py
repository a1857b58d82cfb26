"""The network: the course's equations written out, stacking, the read-out, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, model
from jax_charrnn.cells import rnn
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.model import Model, Params

pytestmark = pytest.mark.usefixtures("strict_promotion")
RNN = cells.get("rnn")


def _net(K=7, m=5, layers=1):
  return Model(RNN, vocab_size=K, hidden_size=m, num_layers=layers)


def _params(K=7, m=5, layers=1, sigma=0.5, seed=0, dtype=jnp.float32):
  net = _net(K, m, layers)
  p = net.init(jax.random.key(seed), InitSpec(sigma=sigma), dtype)
  k = jax.random.split(jax.random.key(seed + 1), 2 + layers)
  layers_ = tuple(l._replace(b=0.1 * jax.random.normal(k[2 + i], (m,), dtype))
                  for i, l in enumerate(p.layers))
  return net, p._replace(layers=layers_, c=0.1 * jax.random.normal(k[1], (K,), dtype))


def test_init_shapes_and_scale():
  net = _net(54, 100)
  p = net.init(jax.random.key(0))
  assert [(n, x.shape) for n, x in model.named_leaves(p)] == [
      ("U", (100, 54)), ("W", (100, 100)), ("b", (100,)), ("V", (54, 100)), ("c", (54,))]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
  assert float(jnp.abs(p.layers[0].b).max()) == 0 and float(jnp.abs(p.c).max()) == 0
  assert 0.008 < float(jnp.std(p.layers[0].W)) < 0.012
  assert model.param_count(p) == 100 * 54 * 2 + 100 * 100 + 100 + 54
  u = net.init(jax.random.key(0), InitSpec(dist="uniform"))
  assert float(u.layers[0].W.min()) >= 0 and float(u.layers[0].W.max()) < 0.01
  with pytest.raises(ValueError):
    net.init(jax.random.key(0), InitSpec(dist="cauchy"))
  stacked = _net(54, 100, layers=3).init(jax.random.key(0))
  assert [n for n, _ in model.named_leaves(stacked)][:4] == ["layer1.U", "layer1.W", "layer1.b",
                                                             "layer2.U"]
  assert stacked.layers[1].U.shape == (100, 100)  # layers above the first read H numbers


def test_forward_scan_equals_the_course_formula_written_out():
  net, p = _params()
  U, W, b = p.layers[0]
  inputs = jnp.array([1, 3, 3, 0, 6, 2])
  h0 = jnp.linspace(-0.5, 0.5, 5)
  logits, (h_last,) = net.forward(p, (h0,), inputs)
  h = np.asarray(h0)
  for t, x in enumerate(inputs):
    a = W @ h + U[:, x] + b          # a_t = W h_{t-1} + U x_t + b
    h = np.tanh(a)                   # h_t = tanh(a_t)
    np.testing.assert_allclose(logits[t], p.V @ h + p.c, rtol=1e-6, atol=1e-6)  # o_t = V h_t + c
  np.testing.assert_allclose(h_last, h, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(rnn.step(p.layers[0], h0, inputs[0]),
                             np.tanh(W @ h0 + U[:, 1] + b), rtol=1e-6)


def test_two_layers_feed_each_other():
  net, p = _params(layers=2)
  inputs = jnp.array([1, 3, 0, 6])
  carry0 = (jnp.full((5,), 0.2), jnp.full((5,), -0.1))
  logits, carry = net.forward(p, carry0, inputs)
  h1, h2 = np.asarray(carry0[0]), np.asarray(carry0[1])
  (U1, W1, b1), (U2, W2, b2) = p.layers
  for t, x in enumerate(inputs):
    h1 = np.tanh(W1 @ h1 + U1[:, x] + b1)
    h2 = np.tanh(W2 @ h2 + U2 @ h1 + b2)  # layer 2 reads layer 1's h_t
    np.testing.assert_allclose(logits[t], p.V @ h2 + p.c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(carry[0], h1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(carry[1], h2, rtol=1e-5, atol=1e-6)
  # One character at a time (net.step, as sampling runs) gives the same.
  c = carry0
  for t, x in enumerate(inputs):
    step_logits, c = net.step(p, c, x)
    np.testing.assert_allclose(step_logits, logits[t], rtol=1e-5, atol=1e-6)


def test_batched_forward_equals_one_stream_at_a_time():
  net, p = _params()
  inputs = jnp.array([[1, 2], [3, 3], [0, 6]])  # [T=3, B=2]
  h0 = jnp.array([[0.1] * 5, [-0.2] * 5])
  logits, _ = net.forward(p, (h0,), inputs)
  for s in range(2):
    ls, _ = net.forward(p, (h0[s],), inputs[:, s])
    np.testing.assert_allclose(logits[:, s], ls, rtol=1e-6)


def test_loss_at_init_is_about_T_log_K():
  K, T = 54, 25
  net = _net(K, 100)
  p = net.init(jax.random.key(0))
  inputs = jnp.arange(T) % K
  loss, (h_last,) = net.loss(p, net.zero_carry(), inputs, (inputs + 1) % K)
  assert abs(float(loss) - T * np.log(K)) < 0.05
  assert h_last.shape == (100,)
  mean, _ = net.loss(p, net.zero_carry(), inputs, (inputs + 1) % K, "mean")
  np.testing.assert_allclose(mean, loss / T, rtol=1e-6)


def test_loss_equals_cross_entropy_by_hand():
  net, p = _params()
  inputs, targets = jnp.array([1, 2, 4]), jnp.array([2, 4, 0])
  logits, _ = net.forward(p, net.zero_carry(), inputs)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = -np.log(probs[np.arange(3), targets]).sum()
  np.testing.assert_allclose(net.loss(p, net.zero_carry(), inputs, targets)[0], expected,
                             rtol=1e-5)


def test_unknown_reduction_is_rejected():
  net, p = _params()
  with pytest.raises(ValueError):
    net.loss(p, net.zero_carry(), jnp.array([1]), jnp.array([2]), "max")


def _echo_params(K=5):
  """A network that echoes its input one step later: x -> (x + 1) mod K, by hand."""
  eye = jnp.eye(K)
  layer = rnn.Params(U=3.0 * eye, W=jnp.zeros((K, K)), b=jnp.zeros(K))
  return _net(K, K), Params(layers=(layer,), V=10.0 * jnp.roll(eye, 1, axis=0), c=jnp.zeros(K))


def _fixed_distribution(probs):
  """A network whose output distribution is `probs` whatever the input (V = 0)."""
  K = len(probs)
  layer = rnn.Params(U=jnp.zeros((2, K)), W=jnp.zeros((2, 2)), b=jnp.zeros(2))
  return _net(K, 2), Params(layers=(layer,), V=jnp.zeros((K, 2)), c=jnp.log(jnp.array(probs)))


def test_sample_is_reproducible_for_a_key():
  net, p = _params()
  c0 = net.zero_carry()
  a = model.sample(net, p, c0, 1, 50, jax.random.key(3))
  b = model.sample(net, p, c0, 1, 50, jax.random.key(3))
  c = model.sample(net, p, c0, 1, 50, jax.random.key(4))
  assert a.shape == (50,) and a.dtype == jnp.int32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_sample_temperature_zero_is_argmax():
  net, p = _echo_params()
  ids = model.sample(net, p, net.zero_carry(), 2, 8, jax.random.key(0), temperature=0.0)
  assert ids.tolist() == [3, 4, 0, 1, 2, 3, 4, 0]
  tiny = model.sample(net, p, net.zero_carry(), 2, 8, jax.random.key(0), temperature=1e-3)
  assert tiny.tolist() == ids.tolist()


def test_sample_top_p_restricts_to_the_nucleus():
  net, p = _fixed_distribution([0.5, 0.3, 0.15, 0.05])
  n, c0 = 4000, net.zero_carry()
  ids = np.asarray(model.sample(net, p, c0, 0, n, jax.random.key(0), top_p=0.7))
  # Probabilities 0.5, 0.3, 0.15, 0.05: the smallest set holding 0.7 is {0, 1}.
  assert set(ids.tolist()) == {0, 1}
  assert abs((ids == 0).mean() - 0.5 / 0.8) < 0.03
  all_ids = np.asarray(model.sample(net, p, c0, 0, n, jax.random.key(0), top_p=1.0))
  np.testing.assert_allclose(np.bincount(all_ids, minlength=4) / n, [0.5, 0.3, 0.15, 0.05],
                             atol=0.025)
  only_top = np.asarray(model.sample(net, p, c0, 0, 200, jax.random.key(0), top_p=0.1))
  assert set(only_top.tolist()) == {0}


def test_sample_top_p_zero_is_greedy_not_garbage():
  net, p = _fixed_distribution([0.5, 0.3, 0.15, 0.05])
  ids = model.sample(net, p, net.zero_carry(), 0, 50, jax.random.key(0), top_p=0.0)
  assert set(np.asarray(ids).tolist()) == {0}  # the most likely character, always kept
  net, p = _fixed_distribution([0.05, 0.3, 0.5, 0.15])
  ids = model.sample(net, p, net.zero_carry(), 0, 50, jax.random.key(0), top_p=0.0)
  assert set(np.asarray(ids).tolist()) == {2}


def test_sample_batched_streams():
  net, p = _params()
  ids = model.sample(net, p, net.zero_carry((3,)), jnp.array([0, 1, 2]), 10, jax.random.key(0))
  assert ids.shape == (10, 3)


def test_jitted_sample_is_not_retraced_for_new_values():
  net, p = _params()
  model.sample(net, p, net.zero_carry(), 1, 20, jax.random.key(0), 0.5, 0.9)
  before = model.sample_on._cache_size()
  model.sample(net, jax.tree.map(lambda x: x * 2, p), (jnp.ones(5) * 0.1,), 2, 20,
               jax.random.key(1), 0.7, 0.8)
  assert model.sample_on._cache_size() == before


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_at_temperature_t_draws_from_softmax_of_logits_over_t(temperature):
  probs = np.array([0.5, 0.3, 0.15, 0.05])
  net, p = _fixed_distribution(list(probs))
  n = 20000
  ids = np.asarray(model.sample(net, p, net.zero_carry(), 0, n, jax.random.key(7), temperature))
  expected = np.exp(np.log(probs) / temperature)
  expected /= expected.sum()
  freq = np.bincount(ids, minlength=4) / n
  # within 4 standard errors of a frequency estimated from n draws
  assert (np.abs(freq - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)).all(), freq
  assert np.abs(freq - probs).max() > 0.05  # and it is not the untempered distribution


# --- Behaviours the mutation pass (mutation/run.py) found unstated ---------------------------


def test_a_model_has_one_layer_unless_told_and_describes_itself():
  net = Model(RNN, vocab_size=7, hidden_size=5)
  assert net.num_layers == 1 and len(net.init(jax.random.key(0)).layers) == 1
  assert net.describe() == "1 layer of rnn, H = 5"
  two = Model(cells.get("lstm"), vocab_size=7, hidden_size=8, num_layers=2, dropout=0.25)
  assert two.describe() == "2 layers of lstm, H = 8, dropout 0.25"


def test_named_leaves_carry_the_layer_only_when_there_are_several():
  _, one = _params()
  assert [n for n, _ in model.named_leaves(one)] == ["U", "W", "b", "V", "c"]
  _, two = _params(layers=2)
  assert [n for n, _ in model.named_leaves(two)] == [
      "layer1.U", "layer1.W", "layer1.b", "layer2.U", "layer2.W", "layer2.b", "V", "c"]
  replaced = model.replace_leaf(two, "layer2.W", jnp.zeros((5, 5)))
  assert float(jnp.abs(replaced.layers[1].W).sum()) == 0.0
  assert float(jnp.abs(replaced.layers[0].W).sum()) > 0.0


def test_first_stream_is_stream_zero_of_every_leaf():
  carry = ({"h": jnp.arange(6.0).reshape(3, 2)}, jnp.array([7.0, 8.0, 9.0]))
  first = model.first_stream(carry)
  assert first[0]["h"].tolist() == [0.0, 1.0] and float(first[1]) == 7.0


def test_temperature_zero_always_takes_the_most_likely_character():
  # Not only when one character is overwhelmingly likely: with 0.5 / 0.3 / 0.15 / 0.05,
  # a draw would pick another character about half the time.
  net, p = _fixed_distribution([0.3, 0.5, 0.15, 0.05])
  ids = model.sample(net, p, net.zero_carry(), 0, 300, jax.random.key(0), temperature=0.0)
  assert set(np.asarray(ids).tolist()) == {1}


def test_top_p_applies_to_each_stream_by_its_own_distribution():
  # Two streams in one call, one uniform over 4 characters, one peaked on id 1 (p = 0.95):
  # at top_p = 0.9 the first keeps all four characters, the second only its top one.
  K = 4
  layer = rnn.Params(U=jnp.zeros((2, K)), W=10.0 * jnp.eye(2), b=jnp.zeros(2))
  net = Model(RNN, vocab_size=K, hidden_size=2)
  V = jnp.array([[0.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
  p = Params(layers=(layer,), V=V, c=jnp.zeros(K))
  carry = (jnp.array([[0.0, 0.0], [0.0, 1.0]]),)  # h stays 0 in stream 0, ~(0, 1) in stream 1
  ids = np.asarray(model.sample(net, p, carry, jnp.array([0, 0]), 400, jax.random.key(0),
                                top_p=0.9))
  assert set(ids[:, 0].tolist()) == {0, 1, 2, 3}
  assert set(ids[:, 1].tolist()) == {1}


def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p_exactly():
  # Four equally likely characters (0.25 each, exact in floating point): at top_p = 0.5 the
  # first two ranked reach 0.5, so the third is not kept even though 0.5 is not above p.
  net, p = _fixed_distribution([0.25, 0.25, 0.25, 0.25])
  ids = model.sample(net, p, net.zero_carry(), 0, 400, jax.random.key(0), top_p=0.5)
  assert len(set(np.asarray(ids).tolist())) == 2
  ids = model.sample(net, p, net.zero_carry(), 0, 400, jax.random.key(0), top_p=0.51)
  assert len(set(np.asarray(ids).tolist())) == 3
