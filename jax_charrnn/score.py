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
visual report all score through `score_ids`, so their numbers agree. The text is
read a call at a time (a view of a token file, or an array), so scoring holds
what one call reads, whatever the text's length.

With `streams=S` > 1 (for long texts: a 2 x 512 LSTM reads one stream far
slower than S side by side) the N - 1 predictions are cut into S contiguous
segments scored side by side; each segment after the first starts WARMUP
symbols early, reading them as context without scoring them, so every
prediction is still scored once, the first WARMUP of a segment's predictions
with WARMUP symbols of context instead of the whole text before them
(docs/evaluation.md gives how far that moves the score). S = 1 is the exact score.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn import pacing, tokens
from jax_charrnn.model import Model, Params

CHUNK = 1000  # characters per step of the scoring scan (fewer for a large network)
BLOCK = 100   # chunks per jitted call at most (100,000 characters; fewer for a large network:
#               pacing.chars_per_call keeps a call near pacing.CALL_FLOPS): Ctrl-C is heard
#               between calls
WARMUP = 1000  # symbols of context a segment reads before its first scored prediction (streams)


@dataclasses.dataclass(frozen=True)
class Score:
  """A text's held-out score."""

  nats_per_char: float
  predictions: int                  # P: the predictions scored
  skipped: int = 0                  # predictions of characters outside the vocabulary
  unknown: dict = dataclasses.field(default_factory=dict)  # {character: count}
  # With per_char: each prediction's surprisal in nats, float [N - 1] in the text's order,
  # NaN where the prediction was skipped; its mean over the rest is nats_per_char.
  nats: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

  @property
  def bits_per_char(self) -> float:
    return self.nats_per_char / math.log(2)

  @property
  def perplexity(self) -> float:
    return math.exp(self.nats_per_char)

  def skipped_note(self, show_each: Callable[[str], list[str]]) -> str:
    """What was skipped, for a person: "12 predictions of characters the model does not know:
    'é' (10), 'Z' (2)" ("" when nothing was); `show_each`: Vocab.show_each."""
    if not self.skipped:
      return ""
    names = ", ".join(f"{show_each(ch)[0]!r} ({n})"
                      for ch, n in sorted(self.unknown.items(), key=lambda kv: -kv[1]))
    return f"{self.skipped:,} predictions of characters the model does not know: {names}"

  def to_dict(self) -> dict[str, Any]:
    return {"bits_per_char": self.bits_per_char, "nats_per_char": self.nats_per_char,
            "perplexity": self.perplexity, "predictions": self.predictions,
            "skipped": self.skipped, "unknown": self.unknown}


@functools.partial(jax.jit, static_argnames=("net", "per_char"))
def _block_nats(net: Model, params: Params, carry: Any, inputs: jax.Array, targets: jax.Array,
                weights: jax.Array, per_char: bool = False) -> tuple[jax.Array, Any, Any]:
  """(sum of weights * -log p(target), the carry after, with per_char each position's
  -log p(target) [n, chunk (, S)], else None) over [n, chunk (, S)] chunks read in order (S
  streams side by side)."""
  dtype = params.V.dtype

  def chunk(carry, xyw):
    x, y, w = xyw
    logits, carry = net.forward(params, carry, x)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, y[..., None], axis=-1)[..., 0]
    return carry, (jnp.sum(jnp.where(w, nll, jnp.zeros((), dtype))), nll if per_char else None)

  carry, (sums, nlls) = lax.scan(chunk, carry, (inputs, targets, weights))
  return jnp.sum(sums), carry, nlls


def _calls(params: Params, steps: int, streams: int = 1) -> tuple[int, int, int]:
  """(symbols a scan step reads per stream, scan steps per call, calls) for `steps` steps,
  sized by the network's cost (pacing.chars_per_call): one compiled program, the last call
  padded."""
  budget = pacing.chars_per_call(params, BLOCK * CHUNK, streams)
  chunk = min(CHUNK, budget)
  n = -(-steps // chunk)
  per_call = min(n, max(1, budget // chunk))
  return chunk, per_call, -(-n // per_call)


def score_ids(net: Model, params: Params, ids, unknown: dict | None = None,
              streams: int = 1, per_char: bool = False) -> Score:
  """The score of a text given as ids (id K and above: outside the vocabulary).

  The text is read in calls of up to BLOCK chunks of up to CHUNK characters,
  one jitted call each, sized by the network's cost (pacing.chars_per_call) so
  that a call takes well under a second (one compiled program: the last call
  is padded), the carry passed from call to call: the same numbers as one
  call, and Ctrl-C is heard between calls.

  Args:
    net, params: the model.
    ids: int [N], N >= 2: an array, or a tokens.Symbols view (read a call at a time).
    unknown: {character: count} of the characters outside the vocabulary, to report.
    streams: S, contiguous segments scored side by side (the module docstring); 1: exact.
    per_char: keep each prediction's surprisal (Score.nats).
  """
  ids = ids if isinstance(ids, tokens.Symbols) else tokens.Symbols(np.asarray(ids, np.int32))
  predictions = len(ids) - 1
  if predictions < 1:
    raise ValueError("scoring needs at least two characters (one prediction)")
  streams = max(1, min(streams, predictions // (2 * WARMUP)))
  # Segment j reads inputs starts[j] .. starts[j] + R - 1 and scores them but, for j > 0, its
  # first WARMUP: consecutive segments' scored stretches meet without a gap or an overlap.
  R = -(-(predictions + (streams - 1) * WARMUP) // streams)
  starts = [j * (R - WARMUP) for j in range(streams)] if streams > 1 else [0]
  chunk, per_call, calls = _calls(params, R, streams)
  dtype = params.V.dtype
  carry = net.zero_carry(() if streams == 1 else (streams,), dtype)
  total, scored, skipped = 0.0, 0, 0
  each = np.full(predictions, np.nan) if per_char else None
  for i in range(calls):
    t0, steps = i * per_call * chunk, per_call * chunk
    x, y, w, unknown_here = _call_inputs(ids, starts, R, t0, steps, net.vocab_size)
    shape = (per_call, chunk) + (() if streams == 1 else (streams,))
    nats, carry, nlls = _block_nats(net, params, carry, x.reshape(shape), y.reshape(shape),
                                    w.reshape(shape), per_char)
    total += float(nats)
    scored, skipped = scored + int(w.sum()), skipped + int(unknown_here.sum())
    if per_char:  # scan step s of segment j predicts the symbol after starts[j] + t0 + s
      where = np.add.outer(np.arange(t0, t0 + steps), np.asarray(starts)).reshape(w.shape)
      each[where[w]] = np.asarray(nlls).reshape(w.shape)[w]
  return Score(total / max(scored, 1), scored, skipped, dict(unknown or {}), each)


def _call_inputs(ids: tokens.Symbols, starts: list[int], length: int, t0: int, steps: int,
                 vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """One call's (inputs, targets, scored, skipped), [steps] for one stream or [steps, S]:
  segment j's scan steps t0 .. t0 + steps - 1 of its `length` (its inputs starts[j] + t0 ..).
  scored: the predictions counted; skipped: those whose target is outside the vocabulary (not
  counted). Neither: a segment's warm-up (scored by the segment before) and the padding after
  its end (the next segment's warm-up's end, or the text's)."""
  predictions = len(ids) - 1
  cols = []
  for j, start in enumerate(starts):
    end = min(start + length, predictions)  # where the next segment's scored stretch begins
    a = min(start + t0, end)
    b = min(start + t0 + steps, end)
    x, y = np.zeros(steps, np.int32), np.zeros(steps, np.int32)
    counted = np.zeros(steps, bool)
    if b > a:
      seg = ids[a:b + 1].read()
      x[:b - a], y[:b - a] = seg[:-1], seg[1:]
      counted[:b - a] = True
    if j > 0:  # the warm-up: read as context, not scored
      counted[:max(0, min(steps, WARMUP - t0))] = False
    known = y < vocab_size
    cols.append((x, np.where(known, y, 0), counted & known, counted & ~known))
  if len(cols) == 1:
    return cols[0]
  return tuple(np.stack([c[k] for c in cols], axis=-1) for k in range(4))
