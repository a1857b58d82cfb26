"""The matrix products of a stacked cell network's update, alone: a bound for the cells table.

The cells table says what share of the machine's matmul peak the trainer's step reaches. This
module answers the question that share raises: how fast are the *same products*, in the same
loops, with none of the cell's arithmetic around them? Its program does, per update and with
the trainer's shapes (B streams of T characters, hidden size H, G weight blocks, K characters, L layers),
exactly the products that `train_speed.cell_flops_per_update` counts:

  forward, layer k:   z_t = zx_t + h_{t-1} W_hh^T                   (a time loop, [B, GH])
                      zx = W_ih[:, x_t] (a gather, k = 0) or h^{k-1} W_ih^T (all t at once)
                      h_t = tanh(z_t[:, :H])                         (the only cell arithmetic)
                      h_{t-1}^T stored in the loop, as the cells store it for dW_hh
  read-out:           logits = h^L V^T, dV = sum_t g_t h_t^T, dh = g V  with g := logits
  backward, layer k:  d_t = dh_t + r_{t+1} / 2,  dz_t = [d_t, ..., d_t] (G copies),
                      r_t = dz_t W_hh                                 (a reverse time loop)
                      dW_hh = sum_t dz_t h_{t-1}^T,  dW_ih = sum_t dz_t x_t^T,  dx = dz W_ih

then a plain step W -= 1e-9 dW so that every update depends on the one before (nothing is
hoisted out of the loop over updates). No gates, no cell state, no softmax, no optimiser state:
what the trainer's step takes beyond this program's time is the price of that arithmetic under
XLA. The numbers it computes mean nothing; `dot_flops` (used by the tests) checks that it and the
trainer's hand BPTT do the same multiply-adds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jax_core

from jax_charrnn.cells import ops


def init(key: jax.Array, blocks: int, layers: int, H: int, K: int) -> dict:
  """Weights shaped as the stacked cell's (PyTorch's layout) and the read-out's."""
  keys = jax.random.split(key, 2 * layers + 1)
  bound = 1.0 / math.sqrt(H)
  u = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -bound, bound)
  layer = [{"W_ih": u(keys[2 * k], (blocks * H, K if k == 0 else H)),
            "W_hh": u(keys[2 * k + 1], (blocks * H, H))} for k in range(layers)]
  return {"layers": layer, "V": u(keys[-1], (K, H))}


def _forward(p: dict, h0: jax.Array, xs: jax.Array, H: int) -> tuple[jax.Array, jax.Array]:
  """(hs, h_prev_T): h_1..h_T [T, B, H] and h_0..h_{T-1} transposed [H, T, B]."""
  W_hh_T = p["W_hh"].T  # once, outside the loop, as the cells do
  T = xs.shape[0]

  def step(state, t_zx):
    h, h_prev_T = state
    t, zx_t = t_zx
    h_prev_T = ops.store_T(h_prev_T, t, h)
    h = jnp.tanh((zx_t + h @ W_hh_T)[:, :H])
    return (h, h_prev_T), h

  h_prev_T = jnp.zeros((H, T) + h0.shape[:-1], h0.dtype)
  (_, h_prev_T), hs = lax.scan(step, (h0, h_prev_T), (jnp.arange(T), ops.project(p["W_ih"], xs)))
  return hs, h_prev_T


def _backward(p: dict, h0: jax.Array, xs: jax.Array, h_prev_T: jax.Array, dhs: jax.Array,
              blocks: int):
  W_hh = p["W_hh"]

  def step(r, dh_t):
    d = dh_t + 0.5 * r  # halved so that nothing grows without bound over T steps
    dz = jnp.concatenate([d] * blocks, axis=-1)
    return dz @ W_hh, dz

  _, dz = lax.scan(step, jnp.zeros_like(h0), dhs, reverse=True)
  dW_ih, dxs = ops.project_grads(p["W_ih"], xs, dz)
  return {"W_ih": dW_ih, "W_hh": ops.sum_outer_T(dz, h_prev_T)}, dxs


def update(params: dict, xs: jax.Array, blocks: int) -> dict:
  """One update's products (the module docstring lists them); xs int [T, B]."""
  H = params["layers"][0]["W_hh"].shape[1]
  h0 = jnp.zeros((xs.shape[1], H), jnp.float32)
  inputs, hs, h_prev_T = [xs], [], []
  for p in params["layers"]:
    h, h_T = _forward(p, h0, inputs[-1], H)
    hs.append(h)
    h_prev_T.append(h_T)
    inputs.append(h)
  g = hs[-1] @ params["V"].T
  grads = {"V": ops.sum_outer(g, hs[-1]), "layers": [None] * len(hs)}
  dh = g @ params["V"]
  for k in reversed(range(len(hs))):
    grads["layers"][k], dh = _backward(params["layers"][k], h0, inputs[k], h_prev_T[k], dh,
                                       blocks)
  return jax.tree.map(lambda w, dw: w - 1e-9 * dw, params, grads)


def make_run(blocks: int, steps: int):
  """A jitted `run(params, inputs, num_steps) -> params`: `num_steps` (<= steps) updates in one
  call, update i on chunk i of inputs (int [n, T, B], as `data.stream_chunks` returns)."""

  def run(params, inputs, num_steps):
    def body(i, params):
      return update(params, lax.dynamic_index_in_dim(inputs, i % inputs.shape[0], 0, False),
                    blocks)
    return lax.fori_loop(0, jnp.minimum(num_steps, steps), body, params)

  return jax.jit(run)


def dot_flops(jaxpr) -> int:
  """Multiply-adds x 2 of every dot_general in a (closed) jaxpr, loops counted as many times as
  they run (scan's length); a while loop's body counts once."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for sub in jax_core.jaxprs_in_params(eqn.params):
      total += times * dot_flops(sub)
  return total
