"""Dynamic evaluation (dynamic.py): its gradient three ways, its update against the formula, its
causality (and a cheating scorer caught), and evaluate's --dynamic and --per_char."""

import json
import math
import os

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jax_charrnn import bptt, cells, dynamic, score
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model

from helpers import assert_user_error, run_module, strict_x64

K = 7
NETS = [("rnn", 1), ("lstm", 2), ("gru", 2)]


def _net(cell="lstm", layers=2, hidden=6, seed=0):
  net = Model(cells.get(cell), vocab_size=K, hidden_size=hidden, num_layers=layers)
  params = net.init(jax.random.key(seed), InitSpec(dist="pytorch"))
  return net, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)


def _weighted_mean(net, params, carry, x, y, w):
  """The segment's loss written plainly, for jax.grad and finite differences."""
  logits, _ = net.forward(params, carry, x)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  nats = -jnp.sum(jax.nn.one_hot(y, K, dtype=log_p.dtype) * log_p, axis=-1)
  return jnp.sum(nats * w) / jnp.maximum(jnp.sum(w), 1.0)


@pytest.mark.parametrize("cell, layers", NETS)
def test_the_segment_gradient_by_hand_equals_jax_grad_and_finite_differences(cell, layers):
  with strict_x64():
    net, params = _net(cell, layers)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.integers(0, K + 1, 9), jnp.int32)   # K: a character outside
    y = jnp.asarray(rng.integers(0, K, 9), jnp.int32)
    w = jnp.asarray([1, 1, 0, 1, 1, 1, 0, 1, 1], jnp.float64)  # 0: skipped or padding
    carry = jax.tree.map(lambda a: a + 0.1, net.zero_carry((), jnp.float64))
    (nats, carry_T), hand = bptt.nats_and_grads(net, params, carry, x, y, w)
    auto = jax.grad(_weighted_mean, argnums=1)(net, params, carry, x, y, w)
    for a, b in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    logits, carry_f = net.forward(params, carry, x)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    np.testing.assert_allclose(nats, -log_p[jnp.arange(9), y], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(carry_T), jax.tree.leaves(carry_f)):
      np.testing.assert_array_equal(a, b)
    # Central differences on a few entries of each array, in float64.
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(hand)[0]
    f = jax.jit(lambda v: _weighted_mean(net, unravel(v), carry, x, y, w))
    for i in rng.choice(flat.size, 12, replace=False):
      e = jnp.zeros_like(flat).at[i].set(1e-6)
      fd = (f(flat + e) - f(flat - e)) / 2e-6
      assert abs(fd - g[i]) <= 1e-7 + 1e-5 * abs(g[i]), (i, float(fd), float(g[i]))


def test_a_wrong_segment_gradient_fails_the_same_comparison():
  with strict_x64():
    net, params = _net("lstm", 2)
    x = jnp.arange(8, dtype=jnp.int32) % K
    y = (x + 1) % K
    w = jnp.ones(8, jnp.float64)
    carry = net.zero_carry((), jnp.float64)
    _, hand = bptt.nats_and_grads(net, params, carry, x, y, w.at[3].set(0.0))  # one unweighted
    auto = jax.grad(_weighted_mean, argnums=1)(net, params, carry, x, y, w)
    assert not np.allclose(hand.V, auto.V, rtol=1e-6)


def test_the_update_is_krauses_rule():
  theta = {"a": jnp.asarray([1.0, -2.0, 0.5])}
  theta0 = {"a": jnp.asarray([0.0, 0.0, 1.0])}
  grads = {"a": jnp.asarray([0.5, 1.0, -1.0])}
  rms = {"a": jnp.asarray([1.0, 2.0, 4.0])}
  rate = {"a": jnp.asarray([0.5, 1.0, 300.0])}  # the last above 1 / lambda: clipped
  prior = dynamic.Prior(theta0, rms, rate)
  lr, decay, eps = 0.1, 0.01, 1e-3
  got = dynamic.update(theta, grads, prior, lr, decay, eps)["a"]
  d = np.minimum(np.asarray(rate["a"]), 1 / decay)
  want = (np.asarray(theta["a"]) - lr * np.asarray(grads["a"]) / (np.asarray(rms["a"]) + eps)
          + decay * d * (np.asarray(theta0["a"]) - np.asarray(theta["a"])))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert d[-1] == 100.0


def test_the_gradient_statistics_are_the_rms_over_windows_read_in_order():
  with strict_x64():
    net, params = _net("gru", 1)
    ids = np.random.default_rng(2).integers(0, K, 200).astype(np.int32)
    prior, chars = dynamic.gradient_rms(net, params, ids, segment=5, streams=3, segments=4)
    assert chars == 3 * 4 * 5
    length = 20
    x = np.stack([ids[j * length:(j + 1) * length] for j in range(3)], -1)
    y = np.stack([ids[j * length + 1:(j + 1) * length + 1] for j in range(3)], -1)
    carry, squares = net.zero_carry((3,), jnp.float64), []
    for k in range(4):
      (_, carry), g = bptt.nats_and_grads(net, params, carry, x[5 * k:5 * k + 5],
                                          y[5 * k:5 * k + 5], jnp.ones((5, 3)))
      squares.append(jax.tree.map(lambda a: a * a, g))
    want = jax.tree.map(lambda *s: jnp.sqrt(sum(s) / 4), *squares)
    for a, b in zip(jax.tree.leaves(prior.rms), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    means = [float(jnp.mean(r)) for r in jax.tree.leaves(prior.rms)]
    np.testing.assert_allclose(prior.rate.V, prior.rms.V / (sum(means) / len(means)))


def _prior(net, params, seed=3):
  ids = np.random.default_rng(seed).integers(0, K, 400).astype(np.int32)
  return dynamic.gradient_rms(net, params, ids, segment=4, streams=4, segments=5)[0]


def test_learning_nothing_is_the_static_score():
  with strict_x64():
    net, params = _net("lstm", 2)
    ids = np.random.default_rng(4).integers(0, K, 57).astype(np.int32)
    nats = dynamic.score(net, _prior(net, params), ids, dynamic.Settings(0.0, 0.0, 5))
    static = score.score_ids(net, params, ids, per_char=True)
    np.testing.assert_allclose(nats, static.nats, rtol=1e-12)
    np.testing.assert_allclose(np.mean(nats), static.nats_per_char, rtol=1e-12)


def test_a_model_that_learns_while_reading_scores_a_repetitive_text_lower():
  with strict_x64():
    net, params = _net("lstm", 1, hidden=16)
    ids = np.tile(np.array([0, 3, 5, 1, 6, 2], np.int32), 60)
    s = dynamic.Settings(learning_rate=0.003, decay=0.001, segment=6)
    nats = dynamic.score(net, _prior(net, params), ids, s)
    static = score.score_ids(net, params, ids).nats_per_char  # 1.97 nats/char
    assert np.mean(nats[-60:]) < 0.1 * static, (np.mean(nats[-60:]), static)  # 0.06


def _learn_first(net, prior, ids, s):
  """A cheating scorer: it learns from each segment, then scores it with what it learnt."""
  n = s.segment
  m = -(-(len(ids) - 1) // n)
  x, y = np.zeros(m * n, np.int32), np.zeros(m * n, np.int32)
  x[:len(ids) - 1], y[:len(ids) - 1] = ids[:-1], ids[1:]
  w = (np.arange(m * n) < len(ids) - 1).astype(np.float64)

  def segment(state, xyw):
    params, carry = state
    _, grads = bptt.nats_and_grads(net, params, carry, *xyw)
    params = dynamic.update(params, grads, prior, s.learning_rate, s.decay, s.epsilon)
    (nats, carry), _ = bptt.nats_and_grads(net, params, carry, *xyw)
    return (params, carry), nats

  _, nats = lax.scan(segment, (prior.theta0, net.zero_carry((), jnp.float64)),
                     (x.reshape(m, n), y.reshape(m, n), w.reshape(m, n)))
  return np.asarray(nats).reshape(-1)[:len(ids) - 1]


def _causal(scorer, ids, cut):
  """Whether every prediction of ids[:cut] scores the same alone as followed by the rest."""
  return np.array_equal(scorer(ids[:cut])[:cut - 1], scorer(ids)[:cut - 1])


@pytest.mark.parametrize("cell, layers", NETS)
def test_each_dynamic_score_depends_on_the_text_before_it_only(cell, layers):
  with strict_x64():
    net, params = _net(cell, layers)
    prior = _prior(net, params)
    ids = np.random.default_rng(5).integers(0, K, 90).astype(np.int32)
    s = dynamic.Settings(learning_rate=0.05, decay=0.01, segment=7)
    assert _causal(lambda t: dynamic.score(net, prior, t, s), ids, cut=52)  # 51 = 7 x 7 + 2
    assert not _causal(lambda t: _learn_first(net, prior, t, s), ids, cut=52)


def test_dynamic_settings_out_of_range_are_refused():
  for bad in (dict(learning_rate=-1.0), dict(decay=1.5), dict(segment=0),
              dict(learning_rate=float("nan")), dict(segment=2.5)):
    with pytest.raises(UserError, match="dynamic evaluation's"):
      dynamic.Settings(**bad)
  dynamic.Settings(learning_rate=0.0, decay=0.0, segment=1)


@pytest.mark.parametrize("streams", [1, 3])
def test_each_static_surprisal_is_kept_in_the_texts_order(streams, monkeypatch):
  monkeypatch.setattr(score, "WARMUP", 10)
  monkeypatch.setattr(score, "CHUNK", 16)
  with strict_x64():
    net, params = _net("gru", 1)
    ids = np.random.default_rng(6).integers(0, K + 1, 301).astype(np.int32)
    s = score.score_ids(net, params, ids, streams=streams, per_char=True)
    assert s.nats.shape == (300,)
    assert np.sum(~np.isnan(s.nats)) == s.predictions and np.isnan(s.nats[ids[1:] == K]).all()
    np.testing.assert_allclose(np.nanmean(s.nats), s.nats_per_char, rtol=1e-12)
    if streams == 1:  # the exact surprisals, position by position
      logits, _ = net.forward(params, net.zero_carry((), jnp.float64), jnp.asarray(ids[:-1]))
      log_p = np.asarray(jax.nn.log_softmax(logits, axis=-1))
      known = ids[1:] < K
      np.testing.assert_allclose(s.nats[known], -log_p[known, ids[1:][known]], rtol=1e-12)


# ---- the command line ----

SMALL = ["--hidden_size=16", "--seq_length=10", "--log_every=10", "--sample_every=0",
         "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=20",
         "--sample_length=10", "--checkpoint_every=20", "--val_fraction=0.1", "--cell=lstm"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("dyn")
  book = root / "book.txt"
  book.write_text("the cat sat on the mat, and the dog sat on the log. " * 80, encoding="utf-8")
  workdir = str(root / "run")
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                 "--num_steps=40", *SMALL)
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir


@pytest.mark.slow
def test_evaluate_dynamic_reports_both_scores_and_writes_each_surprisal(trained, tmp_path):
  out = tmp_path / "surprisal.tsv"
  r = run_module("jax_charrnn.evaluate", f"--workdir={trained}", "--dynamic", "--tune",
                 f"--per_char={out}", "--json", "--dynamic_segment=10")
  assert r.returncode == 0, r.stderr[-2000:]
  got = json.loads(r.stdout.splitlines()[-1])
  dyn = got["dynamic"]
  assert dyn["segment"] == 10 and dyn["method"] == "hand BPTT" and dyn["tuned"]["grid"]
  assert dyn["predictions"] == got["predictions"] and dyn["stat_chars"] > 0
  best = min(dyn["tuned"]["grid"], key=lambda row: row["nats_per_char"])
  assert (dyn["learning_rate"], dyn["decay"]) == (best["learning_rate"], best["decay"])
  table = np.loadtxt(out)
  assert table.shape == (got["predictions"], 3)
  assert math.isclose(table[:, 1].mean(), got["bits_per_char"], rel_tol=1e-12)
  assert math.isclose(table[:, 2].mean(), dyn["bits_per_char"], rel_tol=1e-12)
  assert open(out, encoding="utf-8").readline() == "# position\tbits\tdynamic_bits\n"
  r = run_module("jax_charrnn.evaluate", f"--workdir={trained}", "--dynamic",
                 "--dynamic_segment=10", "--dynamic_lr=0", "--dynamic_decay=0")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "learning while it reads (segments of 10, learning rate 0, decay 0;" in r.stdout
  static = float(r.stdout.split("bits/char")[1].split()[0])
  assert f"dynamic      {static:.4f} bits/char" in r.stdout  # learning nothing: the same


@pytest.mark.slow
def test_evaluate_refuses_what_dynamic_and_per_char_cannot_do(trained, tmp_path):
  cases = [
      (["--dynamic", "--dynamic_decay=2"], "decay must lie in [0, 1]"),
      (["--dynamic", "--streams=4"], "--dynamic reads the text as one stream"),
      (["--tune"], "pass --dynamic too"),
      (["--dynamic", "--tune", "--tune_slice=5:3"], "--tune_slice='5:3' is not START:END"),
      ([f"--per_char={tmp_path}"], "is a directory"),
  ]
  (tmp_path / "old.tsv").write_text("mine")
  cases.append(([f"--per_char={tmp_path / 'old.tsv'}"], "already exists"))
  for args, says in cases:
    r = run_module("jax_charrnn.evaluate", f"--workdir={trained}", *args)
    assert_user_error(r, says)
  assert (tmp_path / "old.tsv").read_text() == "mine"
  assert not os.path.exists(tmp_path / "surprisal.tsv")
