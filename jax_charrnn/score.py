"""How well a model predicts a text: its score in nats and bits per character.

The score of a text x_1..x_N is the mean cross-entropy of its N - 1 next-character
predictions, the model reading the text once from a zero carry that it passes
from chunk to chunk (CHUNK characters a step of one jitted scan):

  nats/char = -(1/P) sum_t log p(x_{t+1} | x_1..x_t)    bits/char = nats/char / ln 2
  perplexity = exp(nats/char)

P counts the predictions whose target is in the model's vocabulary: in another
text, a character outside it (id K or above) is counted, its prediction is
skipped, and read as an input it is a zero vector.

The trainer's held-out score (every --eval_every updates), `evaluate`, and the
visual report all score through `score_ids`, so their numbers agree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn import pacing
from jax_charrnn.model import Model, Params

CHUNK = 1000  # characters per step of the scoring scan (fewer for a large network)
BLOCK = 100   # chunks per jitted call at most (100,000 characters; fewer for a large network:
#               pacing.chars_per_call keeps a call near pacing.CALL_FLOPS): Ctrl-C is heard
#               between calls


@dataclasses.dataclass(frozen=True)
class Score:
  """A text's held-out score."""

  nats_per_char: float
  predictions: int                  # P: the predictions scored
  skipped: int = 0                  # predictions of characters outside the vocabulary
  unknown: dict = dataclasses.field(default_factory=dict)  # {character: count}

  @property
  def bits_per_char(self) -> float:
    return self.nats_per_char / math.log(2)

  @property
  def perplexity(self) -> float:
    return math.exp(self.nats_per_char)

  def to_dict(self) -> dict[str, Any]:
    return {"bits_per_char": self.bits_per_char, "nats_per_char": self.nats_per_char,
            "perplexity": self.perplexity, "predictions": self.predictions,
            "skipped": self.skipped, "unknown": self.unknown}


@functools.partial(jax.jit, static_argnames=("net",))
def _block_nats(net: Model, params: Params, carry: Any, inputs: jax.Array, targets: jax.Array,
                weights: jax.Array) -> tuple[jax.Array, Any]:
  """(sum of weights * -log p(target), the carry after) over [n, CHUNK] chunks read in order."""
  dtype = params.V.dtype

  def chunk(carry, xyw):
    x, y, w = xyw
    logits, carry = net.forward(params, carry, x)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
    return carry, jnp.sum(jnp.where(w, nll, jnp.zeros((), dtype)))

  carry, sums = lax.scan(chunk, carry, (inputs, targets, weights))
  return jnp.sum(sums), carry


def score_ids(net: Model, params: Params, ids: np.ndarray, unknown: dict | None = None) -> Score:
  """The score of a text given as ids (id K and above: outside the vocabulary).

  The text is read in blocks of up to BLOCK chunks of up to CHUNK characters,
  one jitted call each, sized by the network's cost (pacing.chars_per_call) so
  that a call takes well under a second (one compiled program: the last block
  is padded), the carry passed from block to block: the same numbers as one
  call, and Ctrl-C is heard between blocks.

  Args:
    net, params: the model.
    ids: int [N], N >= 2.
    unknown: {character: count} of the characters outside the vocabulary, to report.
  """
  ids = np.asarray(ids, np.int32)
  if ids.size < 2:
    raise ValueError("scoring needs at least two characters (one prediction)")
  inputs, targets = ids[:-1], ids[1:]
  known = targets < net.vocab_size
  budget = pacing.chars_per_call(params, BLOCK * CHUNK)
  chunk = min(CHUNK, budget)
  n = -(-inputs.size // chunk)
  per_call = min(n, max(1, budget // chunk))
  calls = -(-n // per_call)
  pad = calls * per_call * chunk - inputs.size
  shape = (calls, per_call, chunk)
  x = np.pad(inputs, (0, pad)).reshape(shape)
  y = np.pad(np.where(known, targets, 0), (0, pad)).reshape(shape)
  w = np.pad(known, (0, pad)).reshape(shape)
  dtype = params.V.dtype
  carry, total = net.zero_carry((), dtype), 0.0
  for i in range(calls):
    nats, carry = _block_nats(net, params, carry, x[i], y[i], w[i])
    total += float(nats)
  scored = int(known.sum())
  return Score(total / max(scored, 1), scored, int((~known).sum()), dict(unknown or {}))
