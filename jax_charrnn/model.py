"""The vanilla RNN of the course, as pure functions.

  a_t = W h_{t-1} + U x_t + b      h_t = tanh(a_t)
  o_t = V h_t + c                  p_t = softmax(o_t)
  loss = sum_t -log p_t[y_t]       (or the mean over characters)

Shapes: U [m, K], W [m, m], V [K, m], b [m], c [K]; K = vocabulary size,
m = hidden size. A character x_t is an integer id, and `U[:, x_t]` stands
for U @ onehot(x_t).

Every function takes one stream (inputs [T], h [m]) or a batch of streams
(inputs [T, B], h [B, m]); the batch axis rides along as a leading axis of
`h`, so `h @ W.T` is W h_{t-1} for every stream at once. Nothing in this
module changes state.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

REDUCTIONS = ("sum", "mean")


class Params(NamedTuple):
  """The RNN's parameters, named and shaped as in the course."""

  U: jax.Array  # [m, K] input -> hidden
  W: jax.Array  # [m, m] hidden -> hidden
  V: jax.Array  # [K, m] hidden -> output
  b: jax.Array  # [m]    hidden bias
  c: jax.Array  # [K]    output bias


def init_params(key: jax.Array, vocab_size: int, hidden_size: int, sigma: float = 0.01,
                dist: str = "normal", dtype=jnp.float32) -> Params:
  """Course initialisation: b, c = 0; U, W, V = sigma * N(0, 1) (or sigma * U[0, 1)).

  Args:
    key: a PRNG key.
    vocab_size: K.
    hidden_size: m.
    sigma: scale of the random weights.
    dist: "normal" (the handout) or "uniform" (the original notebook's
      sigma * rand, which is what `np.random.rand` gives).
    dtype: float32 for training, float64 for gradient checks.
  """
  K, m = vocab_size, hidden_size
  if dist == "normal":
    draw = functools.partial(jax.random.normal, dtype=dtype)
  elif dist == "uniform":
    draw = functools.partial(jax.random.uniform, dtype=dtype)
  else:
    raise ValueError(f"dist must be 'normal' or 'uniform'; got {dist!r}.")
  kU, kW, kV = jax.random.split(key, 3)
  return Params(
      U=sigma * draw(kU, (m, K)),
      W=sigma * draw(kW, (m, m)),
      V=sigma * draw(kV, (K, m)),
      b=jnp.zeros((m,), dtype),
      c=jnp.zeros((K,), dtype),
  )


def input_term(params: Params, inputs: jax.Array) -> jax.Array:
  """U x_t + b for every t at once: a gather of U's columns, [T, (B,) m]."""
  return params.U.T[inputs] + params.b


def rnn_step(params: Params, h: jax.Array, x: jax.Array) -> jax.Array:
  """One step of the recurrence: h_t = tanh(W h_{t-1} + U x_t + b).

  Args:
    h: h_{t-1}, [m] or [B, m].
    x: x_t, int [] or [B].

  Returns:
    h_t, same shape as h.
  """
  return jnp.tanh(h @ params.W.T + params.U.T[x] + params.b)


def hidden_states(params: Params, h0: jax.Array, inputs: jax.Array) -> jax.Array:
  """h_1..h_T by `lax.scan`, keeping only W h_{t-1} inside the time loop.

  U x_t + b does not depend on h, so it is computed for the whole chunk first
  (a gather); the scan then does one matrix-vector product and a tanh a step.

  Args:
    h0: [m] or [B, m].
    inputs: int [T] or [T, B].

  Returns:
    hs: [T, m] or [T, B, m], hs[t] = h_{t+1}.
  """
  W = params.W

  def step(h, ux_t):
    h = jnp.tanh(h @ W.T + ux_t)  # h_t = tanh(W h_{t-1} + U x_t + b)
    return h, h

  _, hs = lax.scan(step, h0, input_term(params, inputs))
  return hs


def forward(params: Params, h0: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The forward pass over a chunk.

  Args:
    params: the RNN's parameters.
    h0: the hidden state before the chunk, [m] or [B, m].
    inputs: int [T] or [T, B], the input character ids.

  Returns:
    (logits, hs): o_1..o_T [T, (B,) K] and h_1..h_T [T, (B,) m].
  """
  hs = hidden_states(params, h0, inputs)
  logits = hs @ params.V.T + params.c  # o_t = V h_t + c, all t at once
  return logits, hs


def loss(params: Params, h0: jax.Array, inputs: jax.Array, targets: jax.Array,
         reduction: str = "sum") -> tuple[jax.Array, jax.Array]:
  """Cross-entropy of the chunk: sum (or mean) over t (and streams) of -log p_t[y_t].

  Args:
    params: the RNN's parameters.
    h0: [m] or [B, m].
    inputs: int [T] or [T, B].
    targets: int, same shape as inputs.
    reduction: "sum" (the course) or "mean" (per character).

  Returns:
    (loss, h_last): a scalar and h_T (same shape as h0), so that
    `jax.grad(loss, has_aux=True)` gives the gradients and the state to carry.
  """
  logits, hs = forward(params, h0, inputs)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)
  total = jnp.sum(nll)
  if reduction == "mean":
    total = total / targets.size
  elif reduction != "sum":
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
  return total, hs[-1]


def _nucleus(logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """Sets to -inf every logit outside the smallest set with probability >= top_p."""
  order = jnp.argsort(-logits, axis=-1)
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  p = jax.nn.softmax(sorted_logits, axis=-1)
  # Keep a token if the tokens ranked before it hold less than top_p; the
  # most likely token is always kept (so top_p <= 0 means greedy).
  keep_sorted = (jnp.cumsum(p, axis=-1) - p) < top_p
  keep_sorted = keep_sorted.at[..., 0].set(True)
  keep = jnp.zeros_like(keep_sorted)
  keep = jnp.put_along_axis(keep, order, keep_sorted, axis=-1, inplace=False)
  return jnp.where(keep, logits, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("n",))
def sample(params: Params, h0: jax.Array, x0: jax.Array, n: int, key: jax.Array,
           temperature: float | jax.Array = 1.0, top_p: float | jax.Array = 1.0) -> jax.Array:
  """Draws n characters, feeding each drawn character back in.

  Args:
    params: the RNN's parameters.
    h0: the hidden state before x0, [m] (or [B, m] for B streams at once).
    x0: the first input id, int [] (or [B]).
    n: how many characters to draw (static).
    key: PRNG key; the same key gives the same text.
    temperature: divides the logits; 0 means always take the most likely character.
    top_p: nucleus sampling: draw only from the most likely characters whose
      probabilities add up to at least top_p (1.0 keeps them all).

  Returns:
    ids: int32 [n] (or [n, B]), the drawn characters (x0 not included).
  """
  temperature = jnp.asarray(temperature, params.W.dtype)
  top_p = jnp.asarray(top_p, params.W.dtype)

  def step(carry, key_t):
    h, x = carry
    h = rnn_step(params, h, x)
    logits = h @ params.V.T + params.c
    greedy = jnp.argmax(logits, axis=-1)
    scaled = _nucleus(logits / jnp.where(temperature > 0, temperature, 1.0), top_p)
    drawn = jax.random.categorical(key_t, scaled, axis=-1)
    x = jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)
    return (h, x), x

  _, ids = lax.scan(step, (h0, jnp.asarray(x0, jnp.int32)), jax.random.split(key, n))
  return ids
