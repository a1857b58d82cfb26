"""Gated recurrent unit, one layer, exactly PyTorch's nn.GRU: equations, step, BPTT by hand.

  r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)               reset gate
  z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)               update gate
  n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))    candidate
  h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

W_ih [3H, in] stacks W_ir, W_iz, W_in (rows r, z, n: PyTorch's order), W_hh
[3H, H] likewise, b_ih and b_hh [3H]; the reset gate multiplies W_hn h + b_hn,
as PyTorch does (not h before the product). The carry is h. With
a_t = W_ih x_t + b_ih and u_t = W_hh h_{t-1} + b_hh (both [3H]), backward, given
dL/dh_t from above:

  dL/dh_t   = (from above)_t + dh_next
  dL/dz_t   = dL/dh_t ⊙ (h_{t-1} - n_t)        dL/dn_t = dL/dh_t ⊙ (1 - z_t)
  dL/d(n pre-activation) = dL/dn_t ⊙ (1 - n_t²) =: dn̂_t
  dL/dr_t   = dn̂_t ⊙ u_n,t
  dL/da_t   = [dL/dr ⊙ r(1-r), dL/dz ⊙ z(1-z), dn̂]_t
  dL/du_t   = [dL/dr ⊙ r(1-r), dL/dz ⊙ z(1-z), dn̂ ⊙ r]_t
  dh_next   = dL/dh_t ⊙ z_t + W_hh^T dL/du_t   (for h_{t-1})
  dL/dW_hh = sum_t dL/du_t h_{t-1}^T   dL/db_hh = sum_t dL/du_t
  dL/dW_ih = sum_t dL/da_t x_t^T       dL/db_ih = sum_t dL/da_t   dL/dx_t = W_ih^T dL/da_t

Only dh_next couples the time steps; the reverse scan (with dL/da's and dL/du's
buffers, which it fills) holds the one recurrent product W_hh^T dL/du_t, the rest
is whole-chunk products outside it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn.cells import ops


class Params(NamedTuple):
  """One GRU layer, named and laid out as PyTorch's nn.GRU (rows r, z, n)."""

  W_ih: jax.Array  # [3H, in]
  W_hh: jax.Array  # [3H, H]
  b_ih: jax.Array  # [3H]
  b_hh: jax.Array  # [3H]


def init(key: jax.Array, input_size: int, hidden_size: int, *, spec: ops.InitSpec,
         dtype) -> Params:
  """Weights as spec says (PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for all)."""
  H = hidden_size
  k = jax.random.split(key, 4)
  return Params(W_ih=ops.draw(k[0], (3 * H, input_size), spec, H, dtype),
                W_hh=ops.draw(k[1], (3 * H, H), spec, H, dtype),
                b_ih=ops.bias(k[2], (3 * H,), spec, H, dtype),
                b_hh=ops.bias(k[3], (3 * H,), spec, H, dtype))


def zero_carry(hidden_size: int, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> jax.Array:
  return jnp.zeros((*batch_shape, hidden_size), dtype)


def output(h: jax.Array) -> jax.Array:
  return h


def _cell(a: jax.Array, u: jax.Array, h: jax.Array):
  """From a = W_ih x + b_ih, u = W_hh h + b_hh [..., 3H] and h_{t-1}: (h_t, (r, z, n, u_n))."""
  a_r, a_z, a_n = jnp.split(a, 3, axis=-1)
  u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
  r = jax.nn.sigmoid(a_r + u_r)
  z = jax.nn.sigmoid(a_z + u_z)
  n = jnp.tanh(a_n + r * u_n)                # the reset gate acts on W_hn h + b_hn
  return (1.0 - z) * n + z * h, (r, z, n, u_n)


def step(params: Params, h: jax.Array, x: jax.Array) -> jax.Array:
  """One time step; x ids [...] or [..., in]."""
  a = ops.project(params.W_ih, x) + params.b_ih
  return _cell(a, ops.dot(h, params.W_hh.T) + params.b_hh, h)[0]


def forward(params: Params, h0: jax.Array, xs: jax.Array):
  """h_1..h_T by `lax.scan`; the only matrix product inside the time loop is W_hh h_{t-1}.

  As in cells/lstm.py: the first layer's W_ih x_t (a column of W_ih) is gathered inside the
  loop and b_ih added there, where XLA fuses both into the gates (a layer above gets W_ih x_t
  for the whole chunk, one large product before the loop); h_{t-1} is also stored transposed,
  [H, T, ...], the layout dW_hh's product reads.

  Returns:
    (hs [T, ..., H], h_T, residuals): r, z, n and u_n = W_hn h_{t-1} + b_hn for
    every t, and h_{t-1}^T [H, T, ...], what `backward` needs.
  """
  W_ih_T, W_hh_T = params.W_ih.T, params.W_hh.T  # transposed once, outside the loop (cells/rnn.py)
  b_ih, b_hh = params.b_ih, params.b_hh
  ids = ops.is_ids(xs)
  T = xs.shape[0]

  def step_(state, t_x):
    h, h_prev_T = state
    t, x_t = t_x
    h_prev_T = ops.store_T(h_prev_T, t, h)                       # h_{t-1}^T
    a_t = (ops.columns(W_ih_T, x_t) if ids else x_t) + b_ih      # W_ih x_t + b_ih
    h, acts = _cell(a_t, ops.dot(h, W_hh_T) + b_hh, h)
    return (h, h_prev_T), (h,) + acts

  h_prev_T = jnp.zeros((h0.shape[-1], T) + h0.shape[:-1], h0.dtype)
  (h_T, h_prev_T), (hs, r, z, n, u_n) = lax.scan(
      step_, (h0, h_prev_T), (jnp.arange(T), xs if ids else ops.project(params.W_ih, xs)))
  return hs, h_T, (r, z, n, u_n, h_prev_T)


def trace(hs: jax.Array, residuals) -> tuple[dict, dict]:
  """What the layer computed, by name, from `forward`'s outputs, each [T, ..., H]:
  ({"h": h_t}, {"r": r_t, "z": z_t}), the output and the two sigmoid gates (n_t, the tanh
  candidate, is no gate: it is left out)."""
  r, z, _, _, _ = residuals
  return {"h": hs}, {"r": r, "z": z}


def backward(params: Params, h0: jax.Array, xs: jax.Array, hs: jax.Array, residuals,
             dhs: jax.Array):
  """Hand BPTT of one layer (the module docstring has the maths).

  Returns:
    (grads, dxs): grads a `Params`; dxs = dL/dx_t [T, ..., in], None for ids.
  """
  r, z, n, u_n, h_prev_T = residuals
  W_hh = params.W_hh
  H = W_hh.shape[1]

  def step_(carry, t):
    dh_next, da, du = carry
    r_t, z_t, n_t, u_n_t = r[t], z[t], n[t], u_n[t]
    h_prev_t = jnp.where(t == 0, h0, hs[t - 1])                  # h_{t-1}
    dh = dhs[t] + dh_next                                        # dL/dh_t
    dn_hat = dh * (1.0 - z_t) * (1.0 - n_t * n_t)               # through n = tanh(.)
    da_r = dn_hat * u_n_t * r_t * (1.0 - r_t)                    # through σ of r
    da_z = dh * (h_prev_t - n_t) * z_t * (1.0 - z_t)             # through σ of z
    # dL/da_t's and dL/du_t's blocks, each stored straight into its buffer (cells/lstm.py's
    # backward says why: no concatenate).
    da = ops.store(ops.store(ops.store(da, t, da_r, 0), t, da_z, H), t, dn_hat, 2 * H)
    du = ops.store(ops.store(ops.store(du, t, da_r, 0), t, da_z, H), t, dn_hat * r_t, 2 * H)
    return (dh * z_t + ops.dot(du[t], W_hh), da, du), None        # dh_next

  buffer = jnp.zeros(r.shape[:-1] + (3 * H,), r.dtype)
  (_, da, du), _ = lax.scan(step_, (jnp.zeros_like(h0), buffer, buffer), jnp.arange(r.shape[0]),
                            reverse=True)
  dW_hh = ops.sum_outer_T(du, h_prev_T, W_hh.dtype)              # sum_t du_t h_{t-1}^T
  dW_ih, dxs = ops.project_grads(params.W_ih, xs, da)            # sum_t da_t x_t^T; W_ih^T da_t
  return Params(W_ih=dW_ih, W_hh=dW_hh, b_ih=ops.sum_leading(da), b_hh=ops.sum_leading(du)), dxs


def export(params: Params) -> dict[str, np.ndarray]:
  """The layer under nn.GRU's names (the same layout)."""
  return {"weight_ih": np.asarray(params.W_ih), "weight_hh": np.asarray(params.W_hh),
          "bias_ih": np.asarray(params.b_ih), "bias_hh": np.asarray(params.b_hh)}
