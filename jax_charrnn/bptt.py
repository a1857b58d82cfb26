"""Back-propagation through time, derived by hand (no autodiff inside).

With dL/do_t = p_t - onehot(y_t) =: g_t (times 1/(T·B) for the mean loss):

  dL/dV     = sum_t g_t h_t^T                     dL/dc = sum_t g_t
  dL/dh_t   = V^T g_t + W^T dL/da_{t+1}           (the second term is dh_next)
  dL/da_t   = dL/dh_t * (1 - h_t^2)               (backprop through tanh)
  dL/dW     = sum_t dL/da_t h_{t-1}^T             dL/db = sum_t dL/da_t
  dL/dU[:, x_t] += dL/da_t                        (x_t is one-hot)

Only dh_next couples the time steps, so only it lives in the reverse
`lax.scan`: one W^T product and an elementwise product a step. Everything
else is a whole-chunk matrix product, done before or after the scan.

The hidden state h0 carried in from the previous chunk gets no gradient
(dh_next starts at zero after the last step), as in the course. Clipping is
not done here: it belongs to the optimiser, so that these gradients can be
compared with `jax.grad(model.loss)` as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jax_charrnn import model
from jax_charrnn.model import Params


def loss_and_grads(params: Params, h0: jax.Array, inputs: jax.Array, targets: jax.Array,
                   reduction: str = "sum") -> tuple[tuple[jax.Array, jax.Array], Params]:
  """Loss and gradients of `model.loss`, by hand.

  Args:
    params: the RNN's parameters.
    h0: [m] or [B, m].
    inputs: int [T] or [T, B].
    targets: int, same shape as inputs.
    reduction: "sum" or "mean", as in `model.loss`.

  Returns:
    ((loss, h_last), grads): the same as
    `jax.value_and_grad(model.loss, has_aux=True)`, grads a `Params`.
  """
  U, W, V, b, c = params
  K = V.shape[0]

  # ---- forward (model.forward, keeping what the backward pass needs) ----
  hs = model.hidden_states(params, h0, inputs)              # h_1..h_T  [T, (B,) m]
  logits = hs @ V.T + c                                     # o_t = V h_t + c
  log_p = jax.nn.log_softmax(logits, axis=-1)
  y = jax.nn.one_hot(targets, K, dtype=logits.dtype)        # [T, (B,) K]
  loss = -jnp.sum(y * log_p)

  scale = 1.0
  if reduction == "mean":
    scale = 1.0 / targets.size
    loss = loss * scale
  elif reduction != "sum":
    raise ValueError(f"reduction must be one of {model.REDUCTIONS}; got {reduction!r}.")

  # ---- backward: the output layer, all t at once ----
  g = (jnp.exp(log_p) - y) * scale                          # dL/do_t = p_t - y_t
  dV = _sum_outer(g, hs)                                    # sum_t g_t h_t^T
  dc = _sum_leading(g)                                      # sum_t g_t
  dh_out = g @ V                                            # V^T g_t, the direct part of dL/dh_t

  # ---- backward through time: only dh_next is sequential ----
  def step(dh_next, per_t):
    dh_out_t, h_t = per_t
    dh = dh_out_t + dh_next                                 # dL/dh_t
    da = dh * (1.0 - h_t * h_t)                             # backprop through tanh
    return da @ W, da                                       # dh_next = W^T dL/da_t

  _, da = lax.scan(step, jnp.zeros_like(h0), (dh_out, hs), reverse=True)

  # ---- backward: the input side, all t at once ----
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)    # h_0..h_{T-1}
  dW = _sum_outer(da, h_prev)                               # sum_t da_t h_{t-1}^T
  db = _sum_leading(da)                                     # sum_t da_t
  dU = jnp.zeros((K, da.shape[-1]), da.dtype).at[inputs].add(da).T  # dU[:, x_t] += da_t

  return (loss, hs[-1]), Params(U=dU, W=dW, V=dV, b=db, c=dc)


def _sum_leading(a: jax.Array) -> jax.Array:
  """sum over t (and streams) of a_t: [T, (B,) n] -> [n]."""
  return jnp.sum(a, axis=tuple(range(a.ndim - 1)))


def _sum_outer(a: jax.Array, b: jax.Array) -> jax.Array:
  """sum over t (and streams) of a_t b_t^T: [T, (B,) i], [T, (B,) j] -> [i, j].

  One matrix product contracting the leading axes as they are: no reshape
  that would merge T with a stream axis split over devices (which makes
  XLA gather the activations instead of summing partial products).
  """
  lead = tuple(range(a.ndim - 1))
  return lax.dot_general(a, b, ((lead, lead), ((), ())))
