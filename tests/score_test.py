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
