"""The held-out score on a hand-built model: chunks, padding, unknown characters, units."""

import math

import jax
import numpy as np
import pytest

from jax_charrnn import score


def _loss_of(net, p, ids):
  """Mean -log p over the N - 1 predictions, the model reading the text once from zero."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  logits, _ = net.forward(p, net.zero_carry(), jnp.asarray(ids[:-1]))
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return float(-jnp.mean(jnp.take_along_axis(log_p, jnp.asarray(ids[1:])[:, None], axis=-1)))


def test_score_reads_the_text_once_across_chunks_and_skips_unknown_targets(monkeypatch):
  from jax_charrnn import cells  # pylint: disable=g-import-not-at-top
  from jax_charrnn.cells.ops import InitSpec  # pylint: disable=g-import-not-at-top
  from jax_charrnn.model import Model  # pylint: disable=g-import-not-at-top
  net = Model(cells.get("rnn"), vocab_size=5, hidden_size=6)
  p = net.init(jax.random.key(0), InitSpec(dist="pytorch"))
  ids = np.random.default_rng(0).integers(0, 5, 23).astype(np.int32)
  monkeypatch.setattr(score, "CHUNK", 4)  # 22 predictions: 6 chunks, the last one padded
  s = score.score_ids(net, p, ids)
  assert s.predictions == 22 and s.skipped == 0
  np.testing.assert_allclose(s.nats_per_char, _loss_of(net, p, ids), rtol=1e-5)
  # In several jitted calls of 4 chunks (the carry passed between them): the same score.
  monkeypatch.setattr(score, "BLOCK", 4)
  np.testing.assert_allclose(score.score_ids(net, p, ids).nats_per_char, s.nats_per_char,
                             rtol=1e-6)
  monkeypatch.setattr(score, "BLOCK", 100)
  # A character outside the vocabulary (id K): its prediction skipped, itself a zero input.
  with_unknown = ids.copy()
  with_unknown[10] = 5
  s2 = score.score_ids(net, p, with_unknown, {"?": 1})
  assert s2.predictions == 21 and s2.skipped == 1 and s2.unknown == {"?": 1}
  logits, _ = net.forward(p, net.zero_carry(), jax.numpy.asarray(with_unknown[:-1]))
  log_p = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  keep = [t for t in range(22) if with_unknown[t + 1] < 5]
  expected = -np.mean([log_p[t, with_unknown[t + 1]] for t in keep])
  np.testing.assert_allclose(s2.nats_per_char, expected, rtol=1e-5)
  with pytest.raises(ValueError):
    score.score_ids(net, p, ids[:1])
  two = score.score_ids(net, p, ids[:2])  # two characters: one prediction
  assert two.predictions == 1
  np.testing.assert_allclose(two.nats_per_char, _loss_of(net, p, ids[:2]), rtol=1e-5)
  # Nothing known to predict: no predictions, and no division by zero (the CLI refuses it).
  none = score.score_ids(net, p, np.array([0, 5, 5, 6], np.int32), {"x": 2, "y": 1})
  assert (none.predictions, none.skipped, none.nats_per_char) == (0, 3, 0.0)


def test_a_score_in_bits_nats_and_perplexity():
  s = score.Score(nats_per_char=math.log(4), predictions=10, skipped=2, unknown={"x": 2})
  assert s.bits_per_char == pytest.approx(2.0) and s.perplexity == pytest.approx(4.0)
  assert s.to_dict() == {"bits_per_char": pytest.approx(2.0), "nats_per_char": math.log(4),
                         "perplexity": pytest.approx(4.0), "predictions": 10, "skipped": 2,
                         "unknown": {"x": 2}}
  assert score.Score(1.0, 3).skipped == 0 and score.Score(1.0, 3).unknown == {}


def _net(seed=0):
  from jax_charrnn import cells  # pylint: disable=g-import-not-at-top
  from jax_charrnn.cells.ops import InitSpec  # pylint: disable=g-import-not-at-top
  from jax_charrnn.model import Model  # pylint: disable=g-import-not-at-top
  net = Model(cells.get("rnn"), vocab_size=5, hidden_size=6)
  return net, net.init(jax.random.key(seed), InitSpec(dist="pytorch"))


@pytest.mark.parametrize("n,streams", [(200, 2), (200, 3), (201, 4), (257, 5), (1000, 9)])
def test_segments_side_by_side_score_every_prediction_once(monkeypatch, n, streams):
  """A network without memory (W = 0: each prediction reads only its input) gives every
  prediction the same loss whatever its context, so the segments' score is the exact one if and
  only if every prediction is scored exactly once (random weights give the pairs different
  losses: a prediction scored twice, or missed, moves the mean)."""
  monkeypatch.setattr(score, "WARMUP", 7)
  monkeypatch.setattr(score, "CHUNK", 4)
  monkeypatch.setattr(score, "BLOCK", 3)  # several calls: segments end mid-call
  net, p = _net()
  layer = p.layers[0]
  p = p._replace(layers=(layer._replace(W=layer.W * 0),))
  ids = np.random.default_rng(n).integers(0, 6, n).astype(np.int32)  # id 5: unknown
  exact = score.score_ids(net, p, ids)
  side = score.score_ids(net, p, ids, streams=streams)
  assert (side.predictions, side.skipped) == (exact.predictions, exact.skipped)
  assert exact.predictions + exact.skipped == n - 1
  np.testing.assert_allclose(side.nats_per_char, exact.nats_per_char, rtol=1e-5)


def test_segments_differ_from_the_exact_score_only_by_their_context(monkeypatch):
  """With memory the first WARMUP predictions of a segment see less context: a score near the
  exact one, not equal; with a warm-up as long as the text allows, S = 1 (exact)."""
  monkeypatch.setattr(score, "WARMUP", 10)
  monkeypatch.setattr(score, "CHUNK", 8)
  net, p = _net(1)
  ids = np.random.default_rng(1).integers(0, 5, 400).astype(np.int32)
  exact = score.score_ids(net, p, ids)
  side = score.score_ids(net, p, ids, streams=4)
  assert side.predictions == exact.predictions == 399
  assert side.nats_per_char != exact.nats_per_char
  assert abs(side.nats_per_char - exact.nats_per_char) < 0.01 * exact.nats_per_char
  # Too short a text for S segments of 2 x WARMUP predictions: fewer segments, down to one.
  monkeypatch.setattr(score, "WARMUP", 200)
  assert score.score_ids(net, p, ids, streams=4).nats_per_char == exact.nats_per_char
