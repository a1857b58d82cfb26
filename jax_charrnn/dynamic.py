"""Dynamic evaluation (Krause et al., "Dynamic Evaluation of Neural Sequence Models", ICML
2018): the model keeps learning from the text it has already scored.

  python -m jax_charrnn.evaluate --workdir=runs/shakespeare_best --dynamic

The text x_1..x_N is read as one stream in consecutive segments of n characters,
the carry passed on as in the static score. Segment i is scored with the
parameters theta_{i-1}: its predictions' surprisals are what the score counts,
fixed before the model learns anything from the segment. Then it learns from it,
one step on g_i, the gradient of the segment's mean loss (the cell's hand BPTT,
`bptt.nats_and_grads`, in the same pass that scored it):

  theta_i = theta_{i-1} - eta g_i / (r + eps) + lambda d * (theta_0 - theta_{i-1})

r is the root mean square of each entry's gradient over segments of the
*training* text (`gradient_rms`: B streams, the carry passed on, no dropout);
d = min(r / r_bar, 1 / lambda), r_bar the mean over the parameter arrays of
their mean r: every entry decays towards the trained theta_0, more strongly
where training gradients were larger (Krause's "RMS with a global decay prior",
his code's update). The carry after segment i is the one theta_{i-1} computed.

So the score of x_{t+1} depends on x_1..x_t only: each character's score on a
text equals its score on the same text followed by more (dynamic_test checks
it, and that a scorer that learns from a segment before scoring it fails).
It measures a model allowed to adapt to the document it reads (as a compressor
does); it is not a static held-out score, and is reported beside it, never in
its place. The settings are chosen on training text (`tune`), never on the
text being scored.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn import bptt, pacing, tokens
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model, Params

# evaluate --tune's choice on tiny-shakespeare's training text (the 20,000 characters before its
# held-out tail) for shakespeare_5min's network: docs/results.md#dynamic-evaluation.
DEFAULT_LR, DEFAULT_DECAY, DEFAULT_SEGMENT = 5e-5, 0.01, 20
EPSILON = 2e-5             # Krause's
STAT_STREAMS = 64          # the gradient statistics: streams side by side ...
STAT_SEGMENTS = 100        # ... and consecutive segments of each (128,000 characters at n = 20)


@dataclasses.dataclass(frozen=True)
class Settings:
  """eta, lambda and n of the module docstring (and eps)."""

  learning_rate: float = DEFAULT_LR
  decay: float = DEFAULT_DECAY
  segment: int = DEFAULT_SEGMENT
  epsilon: float = EPSILON

  def __post_init__(self):
    for name, value, low, high in (("learning_rate", self.learning_rate, 0.0, 1.0),
                                   ("decay", self.decay, 0.0, 1.0),
                                   ("segment", self.segment, 1, 10_000),
                                   ("epsilon", self.epsilon, 1e-12, 1.0)):
      if not (isinstance(value, (int, float)) and low <= value <= high) or value != value:
        raise UserError(f"The dynamic evaluation's {name} must lie in [{low:g}, {high:g}]; "
                        f"got {value!r}.")
    if not isinstance(self.segment, int):
      raise UserError(f"The dynamic evaluation's segment is a whole number of characters; got "
                      f"{self.segment!r}.")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class Prior(NamedTuple):
  """What the update needs from the training text: theta_0, r and d (the module docstring)."""

  theta0: Params
  rms: Params
  rate: Params            # d = r / r_bar (clipped at 1 / lambda when the update is made)


def nats_and_grads_fn(net: Model) -> tuple[Callable, str]:
  """(the segment's surprisals and gradient: f(params, carry, x, y, w) -> ((nats, carry),
  grads), the method's name): the cell's hand BPTT, or jax.grad of the same weighted mean for
  a cell without one."""
  if net.cell.backward is not None:
    return functools.partial(bptt.nats_and_grads, net), "hand BPTT"

  def autodiff(params, carry, x, y, w):
    def loss(p):
      logits, carry_T = net.forward(p, carry, x)
      log_p = jax.nn.log_softmax(logits, axis=-1)
      nats = -jnp.sum(jax.nn.one_hot(y, net.vocab_size, dtype=log_p.dtype) * log_p, axis=-1)
      w_ = w.astype(log_p.dtype)
      return jnp.sum(nats * w_) / jnp.maximum(jnp.sum(w_), 1.0), (nats, carry_T)
    (_, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return aux, grads
  return autodiff, "jax.grad"


def gradient_rms(net: Model, params: Params, ids: tokens.Symbols | np.ndarray, segment: int,
                 streams: int = STAT_STREAMS, segments: int = STAT_SEGMENTS
                 ) -> tuple[Prior, int]:
  """(the prior, the characters it read) from the training text's first streams x segments x
  n characters (fewer streams or segments for a short text): r = sqrt(mean_k g_k^2) over the
  k windows of [n, streams], read in order with the carry passed on, g_k the gradient of the
  window's mean loss; d = r / r_bar."""
  ids = ids if isinstance(ids, tokens.Symbols) else tokens.Symbols(np.asarray(ids, np.int32))
  usable = len(ids) - 1
  if usable < segment:
    raise UserError(f"The training text ({len(ids):,} characters) is shorter than one segment "
                    f"of the dynamic evaluation ({segment}); pass a shorter segment.")
  streams = min(streams, usable // segment)
  segments = max(1, min(segments, usable // (segment * streams)))
  length = segment * segments  # each stream's stretch
  stretch = ids[:streams * length + 1].read()
  x = np.stack([stretch[j * length:(j + 1) * length] for j in range(streams)], axis=-1)
  y = np.stack([stretch[j * length + 1:(j + 1) * length + 1] for j in range(streams)], axis=-1)
  shape = (segments, segment, streams)
  rms = _rms(net, params, jnp.asarray(x.reshape(shape)), jnp.asarray(y.reshape(shape)))
  means = [float(jnp.mean(leaf)) for leaf in jax.tree.leaves(rms)]
  r_bar = max(sum(means) / len(means), 1e-30)
  return Prior(params, rms, jax.tree.map(lambda r: r / r_bar, rms)), streams * length


@functools.partial(jax.jit, static_argnames=("net",))
def _rms(net: Model, params: Params, xs: jax.Array, ys: jax.Array) -> Params:
  f, _ = nats_and_grads_fn(net)
  dtype = params.V.dtype

  def window(state, xy):
    carry, ms = state
    (_, carry), g = f(params, carry, xy[0], xy[1], jnp.ones(xy[0].shape, dtype))
    return (carry, jax.tree.map(lambda a, b: a + b * b, ms, g)), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  (_, ms), _ = lax.scan(window, (net.zero_carry((xs.shape[-1],), dtype), zeros), (xs, ys))
  return jax.tree.map(lambda m: jnp.sqrt(m / xs.shape[0]), ms)


def update(params: Params, grads: Params, prior: Prior, lr, decay, eps) -> Params:
  """One step of the module docstring's rule: theta - eta g / (r + eps) + lambda d (theta_0 -
  theta), d clipped at 1 / lambda (a decay that would overshoot theta_0 stops at it)."""
  cap = 1.0 / jnp.maximum(decay, 1e-30)
  return jax.tree.map(
      lambda p, g, p0, r, d: p - lr * g / (r + eps) + decay * jnp.minimum(d, cap) * (p0 - p),
      params, grads, prior.theta0, prior.rms, prior.rate)


@functools.partial(jax.jit, static_argnames=("net",))
def _segments(net: Model, hyper: jax.Array, prior: Prior, params: Params, carry: Any,
              xs: jax.Array, ys: jax.Array, ws: jax.Array) -> tuple[Params, Any, jax.Array]:
  """Score, then learn, segment after segment: [n_seg, n] inputs -> the nats of each; hyper:
  (eta, lambda, eps), traced (a grid of them is one program)."""
  f, _ = nats_and_grads_fn(net)

  def segment(state, xyw):
    params, carry = state
    (nats, carry), grads = f(params, carry, *xyw)   # scored with theta_{i-1} ...
    return (update(params, grads, prior, *hyper), carry), nats  # ... then learnt from

  (params, carry), nats = lax.scan(segment, (params, carry), (xs, ys, ws))
  return params, carry, nats


def score(net: Model, prior: Prior, ids: tokens.Symbols | np.ndarray, s: Settings,
          progress: Callable[[int, int], None] | None = None) -> np.ndarray:
  """The dynamic surprisal of every prediction of `ids` (int [N], id K and above: outside the
  vocabulary, not learnt from), float [N - 1] nats, NaN where the target is outside.

  Read in calls of whole segments sized by the network's cost (pacing; Ctrl-C is heard
  between calls, and `progress(done, total)` is told after each); the parameters and the carry
  pass from call to call, so the numbers are those of one call.
  """
  ids = ids if isinstance(ids, tokens.Symbols) else tokens.Symbols(np.asarray(ids, np.int32))
  predictions, n, K = len(ids) - 1, s.segment, net.vocab_size
  if predictions < 1:
    raise ValueError("scoring needs at least two characters (one prediction)")
  per_call = max(1, pacing.chars_per_call(prior.theta0, 1 << 20) // (3 * n))  # fwd + bwd
  total_segments = -(-predictions // n)
  calls = -(-total_segments // per_call)
  dtype = prior.theta0.V.dtype
  params, carry = prior.theta0, net.zero_carry((), dtype)
  hyper = jnp.asarray([s.learning_rate, s.decay, s.epsilon], dtype)
  out = np.full(calls * per_call * n, np.nan)
  for c in range(calls):
    a = c * per_call * n
    seg = ids[a:min(a + per_call * n, predictions) + 1].read()
    x, y = np.zeros(per_call * n, np.int32), np.zeros(per_call * n, np.int32)
    x[:len(seg) - 1], y[:len(seg) - 1] = seg[:-1], seg[1:]
    w = np.zeros(per_call * n, bool)
    w[:len(seg) - 1] = y[:len(seg) - 1] < K
    shape = (per_call, n)
    params, carry, nats = _segments(net, hyper, prior, params, carry, x.reshape(shape),
                                    np.where(w, y, 0).reshape(shape), w.reshape(shape))
    out[a:a + per_call * n] = np.where(w, np.asarray(nats).reshape(-1), np.nan)
    if progress:
      progress(min(a + per_call * n, predictions), predictions)
  return out[:predictions]


def tune(net: Model, prior: Prior, ids: tokens.Symbols | np.ndarray, segment: int,
         learning_rates: Sequence[float], decays: Sequence[float],
         say: Callable[[str], None] = lambda _: None) -> tuple[Settings, list[dict]]:
  """The grid's best (learning rate, decay) on `ids` (a slice of the training text, never the
  text to be scored), learning nothing (0, 0: the static score) among them: (its Settings,
  every point's row {learning_rate, decay, nats_per_char})."""
  rows = []
  for lr, decay in [(0.0, 0.0), *itertools.product(learning_rates, decays)]:
    nats = score(net, prior, ids, Settings(lr, decay, segment))
    rows.append(dict(learning_rate=lr, decay=decay, nats_per_char=float(np.nanmean(nats))))
    say(f"  learning rate {lr:g}, decay {decay:g}: {rows[-1]['nats_per_char'] / math.log(2):.4f}"
        f" bits/char{' (learning nothing: the static score)' if lr == 0 else ''}")
  best = min(rows, key=lambda r: r["nats_per_char"])
  return Settings(best["learning_rate"], best["decay"], segment), rows
