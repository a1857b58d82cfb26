"""Back-propagation through time, derived by hand (no autodiff inside), for any depth.

The read-out, with g_t := dL/do_t = p_t - onehot(y_t) (times 1/(T·B) for the
mean loss):

  dL/dV = sum_t g_t h_t^T        dL/dc = sum_t g_t        dL/dh^N_t = V^T g_t

Then down the stack, by composition: each layer's cell turns "dL/dh_t
arriving from above, every t" into its parameter gradients and "dL/dx_t for
my inputs, every t", which is the layer below's "from above". One function per
cell (e.g. cells/rnn.py's `backward`, where the course's equations are), used
at every depth; the first layer's inputs are characters and get no gradient.

With dropout a layer's output h reaches the layer above (or the read-out) as
x = h * m (m: 0 or 1 / (1 - p), fixed for the update), so dL/dh = dL/dx * m:
each mask multiplies the gradient on its way down where it multiplied the
activation on its way up. Locked (variational) dropout is the same with m_t = m
for every t. Input dropout makes the first layer's inputs the vectors
onehot(x_t) ⊙ m_t, so dL/dW_ih = sum_t dz_t (onehot(x_t) ⊙ m_t)^T (the cell's
own rule for vector inputs). Weight drop (DropConnect) runs the layer with
W' = W_hh ⊙ M, and since dW'/dW_hh is M entrywise, dL/dW_hh = dL/dW' ⊙ M: the
cell's backward with W', then its W_hh gradient times M.

The carry coming in from the previous chunk gets no gradient, as in the
course. Clipping is not done here: it belongs to the optimiser, so that these
gradients can be compared with `jax.grad(net.loss)` as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_charrnn.cells import ops
from jax_charrnn.model import REDUCTIONS, Model, Params


def loss_and_grads(net: Model, params: Params, carry0: tuple, inputs: jax.Array,
                   targets: jax.Array, reduction: str = "sum", masks=None
                   ) -> tuple[tuple[jax.Array, tuple], Params]:
  """Loss and gradients of `net.loss`, by hand.

  Args:
    net: the network (its cell must have a hand `backward`).
    params: its parameters.
    carry0: the carry before the chunk (one per layer; leaves [H] or [B, H]).
    inputs: int [T] or [T, B].
    targets: int, same shape as inputs.
    reduction: "sum" or "mean", as in `net.loss`.
    masks: dropout masks (`net.dropout_masks`), or None, as in `net.loss`.

  Returns:
    ((loss, carry_T), grads): the same as
    `jax.value_and_grad(net.loss, has_aux=True)`, grads a `Params`.

  Raises:
    ValueError: the cell has no hand-derived backward pass.
  """
  all_hs, carry_T, residuals, top, log_p = _forward(net, params, carry0, inputs, masks)
  y = jax.nn.one_hot(targets, params.V.shape[0], dtype=log_p.dtype)  # [T, (B,) K]
  loss = -jnp.sum(y * log_p)

  scale = 1.0
  if reduction == "mean":
    scale = 1.0 / targets.size
    loss = loss * scale
  elif reduction != "sum":
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
  g = (jnp.exp(log_p) - y) * scale                          # dL/do_t = p_t - y_t
  return (loss, carry_T), _backward(net, params, carry0, inputs, masks, all_hs, residuals,
                                    top, g)


def nats_and_grads(net: Model, params: Params, carry0: tuple, inputs: jax.Array,
                   targets: jax.Array, weights: jax.Array
                   ) -> tuple[tuple[jax.Array, tuple], Params]:
  """Each position's surprisal and the gradients of their weighted mean, by hand (dynamic
  evaluation's step: it scores a segment and learns from it in one pass).

  L = sum_t w_t n_t / sum_t w_t with n_t = -log p_t[y_t], so dL/do_t = (p_t - y_t) w_t /
  sum_t w_t: a position of weight 0 (padding, a target outside the vocabulary) adds nothing.

  Args:
    net, params, carry0, inputs, targets: as for `loss_and_grads` (no dropout).
    weights: [T] or [T, B], 1 where a prediction counts, 0 where not.

  Returns:
    ((n [T, (B)], carry_T), grads of L): n_t in nats, 0 where the target is outside the
    vocabulary (id K or above).
  """
  all_hs, carry_T, residuals, top, log_p = _forward(net, params, carry0, inputs, None)
  y = jax.nn.one_hot(targets, params.V.shape[0], dtype=log_p.dtype)
  nats = -jnp.sum(y * log_p, axis=-1)
  w = weights.astype(log_p.dtype)
  g = (jnp.exp(log_p) - y) * (w / jnp.maximum(jnp.sum(w), 1.0))[..., None]
  return (nats, carry_T), _backward(net, params, carry0, inputs, None, all_hs, residuals,
                                    top, g)


def _forward(net: Model, params: Params, carry0: tuple, inputs: jax.Array, masks):
  """net.forward, keeping what the backward pass needs: (every layer's outputs, carry_T,
  residuals, the read-out's input, log p_t)."""
  if net.cell.backward is None:
    raise ValueError(f"the {net.cell.name!r} cell has no hand-derived BPTT; use jax.grad "
                     "(grad='autodiff').")
  all_hs, carry_T, residuals = net.hidden_states(params, carry0, inputs, masks)
  top = net.top(all_hs, masks)                              # the read-out's input
  logits = net.read_out(params, top)                        # o_t = V h_t + c
  return all_hs, carry_T, residuals, top, jax.nn.log_softmax(logits, axis=-1)


def _backward(net: Model, params: Params, carry0: tuple, inputs: jax.Array, masks, all_hs,
              residuals, top: jax.Array, g: jax.Array) -> Params:
  """The gradients, given g_t = dL/do_t for every t: the read-out, then down the stack."""
  # ---- the read-out, all t at once ----
  V = net.compute(params.V)                                 # as the products read it
  dV = ops.sum_outer(g, top, V.dtype)                       # sum_t g_t h_t^T
  dc = ops.sum_leading(g)                                   # sum_t g_t
  dh = ops.dot(g, V)                                        # V^T g_t: dL/d(read-out input)_t
  hidden = None if masks is None else masks.hidden
  if hidden is not None:
    dh = dh * hidden[-1]                                    # through the dropout mask

  # ---- down the stack, one cell backward per layer ----
  layer_grads = [None] * len(params.layers)
  for k in reversed(range(len(params.layers))):
    xs = (net.first_inputs(inputs, masks, params.V.dtype) if k == 0
          else all_hs[k - 1] * (1.0 if hidden is None else hidden[k - 1]))
    used = net.compute(net.layer_params(params.layers[k], k, masks))  # W_hh ⊙ M, weight drop
    layer_grads[k], dxs = net.cell.backward(used, carry0[k], xs, all_hs[k], residuals[k], dh)
    layer_grads[k] = net.layer_params(layer_grads[k], k, masks)  # dL/dW_hh = dL/dW' ⊙ M
    if k > 0:
      dh = dxs if hidden is None else dxs * hidden[k - 1]   # dL/dh of the layer below
  return Params(layers=tuple(layer_grads), V=dV, c=dc)
