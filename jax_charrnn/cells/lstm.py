"""Long short-term memory, one layer, exactly PyTorch's nn.LSTM: equations, step, BPTT by hand.

  i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)        input gate
  f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)        forget gate
  g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)     candidate
  o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)        output gate
  c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                       cell state
  h_t = o_t ⊙ tanh(c_t)

W_ih [4H, in] stacks W_ii, W_if, W_ig, W_io (rows i, f, g, o: PyTorch's order),
W_hh [4H, H] likewise, b_ih and b_hh [4H]; in = K for the first layer (x_t
one-hot), H above. The carry is (h, c). With z_t = W_ih x_t + b_ih + W_hh h_{t-1}
+ b_hh (the four pre-activations), backward, given dL/dh_t from above:

  dL/dh_t  = (from above)_t + W_hh^T dL/dz_{t+1}                   (dh_next)
  dL/do_t  = dL/dh_t ⊙ tanh(c_t)
  dL/dc_t  = dL/dh_t ⊙ o_t ⊙ (1 - tanh²(c_t)) + dL/dc_{t+1} ⊙ f_{t+1}   (dc_next)
  dL/di_t  = dL/dc_t ⊙ g_t      dL/dg_t = dL/dc_t ⊙ i_t      dL/df_t = dL/dc_t ⊙ c_{t-1}
  dL/dz_t  = [dL/di ⊙ i(1-i), dL/df ⊙ f(1-f), dL/dg ⊙ (1-g²), dL/do ⊙ o(1-o)]_t
  dL/dW_hh = sum_t dL/dz_t h_{t-1}^T      dL/dW_ih = sum_t dL/dz_t x_t^T
  dL/db_ih = dL/db_hh = sum_t dL/dz_t     dL/dx_t = W_ih^T dL/dz_t

Only (dh_next, dc_next) couple the time steps, so only they live in the reverse
scan (with dL/dz's buffer, which it fills) with the one recurrent product
W_hh^T dL/dz_t; the products with W_ih and the weight gradients are whole-chunk
products outside it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn.cells import ops


class Params(NamedTuple):
  """One LSTM layer, named and laid out as PyTorch's nn.LSTM (rows i, f, g, o)."""

  W_ih: jax.Array  # [4H, in]
  W_hh: jax.Array  # [4H, H]
  b_ih: jax.Array  # [4H]
  b_hh: jax.Array  # [4H]


class Carry(NamedTuple):
  h: jax.Array  # [..., H]
  c: jax.Array  # [..., H]


def init(key: jax.Array, input_size: int, hidden_size: int, *, spec: ops.InitSpec,
         dtype) -> Params:
  """Weights as spec says (PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for all); spec.forget_bias is
  added to the forget gate's rows of b_ih."""
  H = hidden_size
  k = jax.random.split(key, 4)
  b_ih = ops.bias(k[2], (4 * H,), spec, H, dtype)
  b_ih = b_ih.at[H:2 * H].add(jnp.asarray(spec.forget_bias, dtype))
  return Params(W_ih=ops.draw(k[0], (4 * H, input_size), spec, H, dtype),
                W_hh=ops.draw(k[1], (4 * H, H), spec, H, dtype),
                b_ih=b_ih, b_hh=ops.bias(k[3], (4 * H,), spec, H, dtype))


def zero_carry(hidden_size: int, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> Carry:
  z = jnp.zeros((*batch_shape, hidden_size), dtype)
  return Carry(h=z, c=z)


def output(carry: Carry) -> jax.Array:
  return carry.h


def _cell(z: jax.Array, c: jax.Array):
  """From pre-activations z [..., 4H] and c_{t-1}: (h_t, c_t, (i, f, g, o, tanh c_t))."""
  i, f, g, o = jnp.split(z, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c = f * c + i * g                      # c_t = f ⊙ c_{t-1} + i ⊙ g
  tc = jnp.tanh(c)
  return o * tc, c, (i, f, g, o, tc)     # h_t = o ⊙ tanh(c_t)


def step(params: Params, carry: Carry, x: jax.Array) -> Carry:
  """One time step; x ids [...] or [..., in]."""
  z = (ops.project(params.W_ih, x) + params.b_ih + ops.dot(carry.h, params.W_hh.T)
       + params.b_hh)
  h, c, _ = _cell(z, carry.c)
  return Carry(h=h, c=c)


def forward(params: Params, carry0: Carry, xs: jax.Array):
  """h_1..h_T by `lax.scan`; the only matrix product inside the time loop is W_hh h_{t-1}.

  The first layer's W_ih x_t is a column of W_ih (x_t one-hot), gathered inside the loop,
  where XLA fuses it into the gates; a layer above gets W_ih x_t for the whole chunk at once,
  one large product before the loop. The biases are added inside the loop too, where the
  gates read z_t anyway, not in a pass of their own over [T, ..., 4H].

  h_{t-1} is also stored transposed, [H, T, ...], the layout in which dW_hh's product reads
  it: made from hs after the loop, XLA fuses the shift into a transposing copy of its own,
  several times dearer than storing it a step at a time (docs/results.md has the figures).

  Returns:
    (hs [T, ..., H], carry_T, residuals): residuals are c_t, the activated gates i, f, g, o
    and tanh(c_t) for every t, and h_{t-1}^T [H, T, ...], what `backward` needs.
  """
  W_ih_T, W_hh_T = params.W_ih.T, params.W_hh.T  # transposed once, outside the loop (cells/rnn.py)
  b = params.b_ih + params.b_hh
  ids = ops.is_ids(xs)
  T = xs.shape[0]

  def step_(state, t_x):
    carry, h_prev_T = state
    t, x_t = t_x
    h_prev_T = ops.store_T(h_prev_T, t, carry.h)                 # h_{t-1}^T
    zx_t = ops.columns(W_ih_T, x_t) if ids else x_t              # W_ih x_t
    h, c, acts = _cell(zx_t + b + ops.dot(carry.h, W_hh_T), carry.c)
    return (Carry(h=h, c=c), h_prev_T), (h, c) + acts

  h_prev_T = jnp.zeros((carry0.h.shape[-1], T) + carry0.h.shape[:-1], carry0.h.dtype)
  (carry_T, h_prev_T), (hs, cs, i, f, g, o, tc) = lax.scan(
      step_, (carry0, h_prev_T), (jnp.arange(T), xs if ids else ops.project(params.W_ih, xs)))
  return hs, carry_T, (cs, i, f, g, o, tc, h_prev_T)


def trace(hs: jax.Array, residuals) -> tuple[dict, dict]:
  """What the layer computed, by name, from `forward`'s outputs, each [T, ..., H]:
  ({"c": c_t, "h": h_t}, {"i": i_t, "f": f_t, "o": o_t}), the memory and output, and the three
  sigmoid gates (g_t, the tanh candidate, is no gate: it is left out)."""
  cs, i, f, _, o, _, _ = residuals
  return {"c": cs, "h": hs}, {"i": i, "f": f, "o": o}


def backward(params: Params, carry0: Carry, xs: jax.Array, hs: jax.Array, residuals,
             dhs: jax.Array):
  """Hand BPTT of one layer (the module docstring has the maths).

  Returns:
    (grads, dxs): grads a `Params`; dxs = dL/dx_t [T, ..., in], None for ids.
  """
  cs, i, f, g, o, tc, h_prev_T = residuals
  W_hh = params.W_hh
  H = W_hh.shape[1]

  def step_(carry, t):
    dh_next, dc_next, dz = carry
    i_t, f_t, g_t, o_t, tc_t = i[t], f[t], g[t], o[t], tc[t]
    c_prev_t = jnp.where(t == 0, carry0.c, cs[t - 1])            # c_{t-1}
    dh = dhs[t] + dh_next                                        # dL/dh_t
    do = dh * tc_t                                               # dL/do_t
    dc = dc_next + dh * o_t * (1.0 - tc_t * tc_t)                # dL/dc_t
    # dL/dz_t's four blocks, each stored straight into dz[t] (XLA fuses a block's arithmetic
    # with its store); a concatenate would be a kernel of its own, its result copied again.
    dz = ops.store(dz, t, dc * g_t * i_t * (1.0 - i_t), 0)         # through σ of i
    dz = ops.store(dz, t, dc * c_prev_t * f_t * (1.0 - f_t), H)    # through σ of f
    dz = ops.store(dz, t, dc * i_t * (1.0 - g_t * g_t), 2 * H)     # through tanh of g
    dz = ops.store(dz, t, do * o_t * (1.0 - o_t), 3 * H)           # through σ of o
    return (ops.dot(dz[t], W_hh), dc * f_t, dz), None            # dh_next, dc_next

  zeros = jnp.zeros_like(carry0.h)
  dz0 = jnp.zeros(cs.shape[:-1] + (4 * H,), cs.dtype)
  (_, _, dz), _ = lax.scan(step_, (zeros, zeros, dz0), jnp.arange(cs.shape[0]), reverse=True)
  dW_hh = ops.sum_outer_T(dz, h_prev_T, W_hh.dtype)              # sum_t dz_t h_{t-1}^T
  db = ops.sum_leading(dz)                                       # sum_t dz_t
  dW_ih, dxs = ops.project_grads(params.W_ih, xs, dz)           # sum_t dz_t x_t^T; W_ih^T dz_t
  return Params(W_ih=dW_ih, W_hh=dW_hh, b_ih=db, b_hh=db), dxs


def export(params: Params) -> dict[str, np.ndarray]:
  """The layer under nn.LSTM's names (the same layout)."""
  return {"weight_ih": np.asarray(params.W_ih), "weight_hh": np.asarray(params.W_hh),
          "bias_ih": np.asarray(params.b_ih), "bias_hh": np.asarray(params.b_hh)}
