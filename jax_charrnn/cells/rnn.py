"""The course's vanilla RNN, one layer: its equations, its step, its BPTT by hand.

  a_t = W h_{t-1} + U x_t + b          h_t = tanh(a_t)

U [H, in] (in = K for the first layer, whose x_t is one-hot), W [H, H], b [H];
H = hidden_size (the course's m). The carry is h itself. The read-out
(o_t = V h_t + c, the softmax and the loss) belongs to the model (model.py),
which also stacks layers: layer k's h_t is layer k+1's x_t.

Backward, given dL/dh_t arriving from above for every t (the read-out's
V^T g_t, or the next layer's dL/dx_t):

  dL/dh_t = (from above)_t + W^T dL/da_{t+1}      (the second term is dh_next)
  dL/da_t = dL/dh_t * (1 - h_t^2)                 (backprop through tanh)
  dL/dW   = sum_t dL/da_t h_{t-1}^T               dL/db = sum_t dL/da_t
  dL/dU   = sum_t dL/da_t x_t^T                   (x_t one-hot: dL/dU[:, x_t] += dL/da_t)
  dL/dx_t = U^T dL/da_t                           (for the layer below)

Only dh_next couples the time steps, so only it lives in the reverse
`lax.scan`: one W^T product and an elementwise product a step. Everything
else is a whole-chunk matrix product, done before or after the scan. The
carry h_0 from the previous chunk gets no gradient (dh_next starts at zero
after the last step), as in the course.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import numpy as np

from jax_charrnn.cells import ops


class Params(NamedTuple):
  """One RNN layer, named and shaped as in the course."""

  U: jax.Array  # [H, in] input -> hidden
  W: jax.Array  # [H, H]  hidden -> hidden
  b: jax.Array  # [H]     hidden bias


def init(key: jax.Array, input_size: int, hidden_size: int, *, spec: ops.InitSpec,
         dtype) -> Params:
  """Course initialisation: U, W = sigma * N(0, 1) (or sigma * U[0, 1)); b = 0.

  With spec.dist "pytorch": U, W, b ~ U(-1/sqrt(H), 1/sqrt(H)), as nn.RNN.
  """
  kU, kW = jax.random.split(key)
  H = hidden_size
  return Params(U=ops.draw(kU, (H, input_size), spec, H, dtype),
                W=ops.draw(kW, (H, H), spec, H, dtype),
                b=ops.bias(jax.random.fold_in(key, 2), (H,), spec, H, dtype))


def zero_carry(hidden_size: int, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> jax.Array:
  """h_0 = 0, [*batch_shape, H]."""
  return jnp.zeros((*batch_shape, hidden_size), dtype)


def output(h: jax.Array) -> jax.Array:
  return h


def step(params: Params, h: jax.Array, x: jax.Array) -> jax.Array:
  """h_t = tanh(W h_{t-1} + U x_t + b); h [..., H], x ids [...] or [..., in]."""
  return jnp.tanh(ops.dot(h, params.W.T) + ops.project(params.U, x) + params.b)


def forward(params: Params, h0: jax.Array, xs: jax.Array) -> tuple[jax.Array, jax.Array, None]:
  """h_1..h_T by `lax.scan`, keeping only W h_{t-1} inside the time loop.

  U x_t + b does not depend on h, so it is computed for the whole chunk first
  (a gather for ids); the scan then does one matrix-vector product and a tanh
  a step.

  Args:
    h0: [..., H].
    xs: ids [T, ...] or [T, ..., in].

  Returns:
    (hs, h_T, None): hs [T, ..., H], hs[t] = h_{t+1}; no residuals (hs is all
    the backward pass needs).
  """
  # W h for a batch is h @ W^T; transposed here, once, and not inside the loop, where XLA
  # on CPU would copy W into the layout its product wants at every step.
  W_T = params.W.T

  def step_(h, ux_t):
    h = jnp.tanh(ops.dot(h, W_T) + ux_t)  # h_t = tanh(W h_{t-1} + U x_t + b)
    return h, h

  h_T, hs = lax.scan(step_, h0, ops.project(params.U, xs) + params.b)
  return hs, h_T, None


def trace(hs: jax.Array, residuals: None) -> tuple[dict, dict]:
  """What the layer computed, by name, from `forward`'s outputs: ({"h": h_t}, no gates)."""
  del residuals
  return {"h": hs}, {}


def backward(params: Params, h0: jax.Array, xs: jax.Array, hs: jax.Array, residuals: None,
             dhs: jax.Array) -> tuple[Params, jax.Array | None]:
  """Hand BPTT of one layer (the module docstring has the maths).

  Args:
    h0: [..., H], the carry before the chunk.
    xs: the layer's inputs, ids [T, ...] or [T, ..., in].
    hs: h_1..h_T from `forward`, [T, ..., H].
    dhs: dL/dh_t arriving from above, [T, ..., H].

  Returns:
    (grads, dxs): grads a `Params`; dxs = dL/dx_t [T, ..., in], None for ids.
  """
  del residuals
  W = params.W

  def step_(dh_next, per_t):
    dh_above_t, h_t = per_t
    dh = dh_above_t + dh_next                               # dL/dh_t
    da = dh * (1.0 - h_t * h_t)                             # backprop through tanh
    return ops.dot(da, W), da                               # dh_next = W^T dL/da_t

  _, da = lax.scan(step_, jnp.zeros_like(h0), (dhs, hs), reverse=True)
  dW = ops.sum_outer(da, ops.shifted(h0, hs), W.dtype)      # sum_t da_t h_{t-1}^T
  db = ops.sum_leading(da)                                  # sum_t da_t
  dU, dxs = ops.project_grads(params.U, xs, da)             # dU[:, x_t] += da_t; U^T da_t
  return Params(U=dU, W=dW, b=db), dxs


def export(params: Params) -> dict[str, np.ndarray]:
  """The layer under PyTorch nn.RNN's names (tanh): weight_ih = U, weight_hh = W, bias_ih = b,
  bias_hh = 0 (nn.RNN has two biases; the course's one is their sum)."""
  return {"weight_ih": np.asarray(params.U), "weight_hh": np.asarray(params.W),
          "bias_ih": np.asarray(params.b), "bias_hh": np.zeros_like(np.asarray(params.b))}
