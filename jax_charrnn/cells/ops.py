"""Small pieces every cell uses: input projections and their gradients, sums, stores inside a
time loop, initial weights.

JAX only. A layer's input is either character ids (int [T, ...], standing for
one-hot vectors of the K characters) or the layer below's outputs (float
[T, ..., in]); `project` and `project_grads` handle both, so a cell is written
once for every depth (the LSTM and GRU gather a step's columns inside their
loops with `columns`, and branch on `is_ids` for that alone).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

INIT_DISTS = ("normal", "uniform", "pytorch")


def is_ids(xs: jax.Array) -> bool:
  return jnp.issubdtype(xs.dtype, jnp.integer)


def dot(a: jax.Array, w: jax.Array) -> jax.Array:
  """a @ w. Mixed precision (w in bfloat16: `model.Model.compute`): a rounded to bfloat16 too,
  a bfloat16 product summed in float32, a float32 result (XLA's CPU runs it on the bfloat16
  units where there are: avx512_bf16, AMX); otherwise a @ w.

  Every mixed-precision product is a dot_general of bfloat16 operands with a float32 result,
  as it is: XLA's CPU runtime has no kernel for some rearranged forms ("Unsupported element
  type for DotThunk::Execute: BF16 x BF16 = F32", seen when the transpose of a product's
  result was folded into it), so `sum_outer`'s float32 layout trick is not applied to them.
  """
  if w.dtype == jnp.bfloat16:
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=jnp.float32)
  return a @ w


def project(w: jax.Array, xs: jax.Array) -> jax.Array:
  """w x_t for every t: w [rows, in]; xs ids [...] or [..., in] -> [..., rows].

  For ids, w @ onehot(x_t) is column x_t of w: a gather, no product. An id
  outside [0, in) (a character the vocabulary lacks, when scoring another
  text) stands for the zero vector: its column is zeros.
  """
  if is_ids(xs):
    return columns(w.T, xs)
  return dot(xs, w.T)


def columns(w_T: jax.Array, ids: jax.Array) -> jax.Array:
  """w @ onehot(id) for each id, given w^T [in, rows]: [...] -> [..., rows] (zeros for an id
  outside [0, in), as `project` says)."""
  return jnp.take(w_T, ids, axis=0, mode="fill", fill_value=0)


def project_grads(w: jax.Array, xs: jax.Array, dz: jax.Array) -> tuple[jax.Array, jax.Array | None]:
  """(dL/dw, dL/dxs) of z_t = w x_t, given dz = dL/dz [T, ..., rows].

  dL/dw = sum_t dz_t x_t^T; for ids that is dL/dw[:, x_t] += dz_t (a scatter-add:
  a character seen twice adds twice). dL/dx_t = w^T dz_t (None for ids).
  """
  if is_ids(xs):
    dw = jnp.zeros((w.shape[1], w.shape[0]), dz.dtype).at[xs].add(dz).T
    return dw, None
  return sum_outer(dz, xs, w.dtype), dot(dz, w)


def sum_leading(a: jax.Array) -> jax.Array:
  """sum over t (and streams) of a_t: [T, ..., n] -> [n]."""
  return jnp.sum(a, axis=tuple(range(a.ndim - 1)))


def sum_outer(a: jax.Array, b: jax.Array, like=None) -> jax.Array:
  """sum over t (and streams) of a_t b_t^T: [T, ..., i], [T, ..., j] -> [i, j] (like: the
  dtype of the weights this is the gradient of; bfloat16 makes it a mixed-precision product).

  One matrix product contracting the leading axes as they are: no reshape
  that would merge T with a stream axis split over devices (which makes
  XLA gather the activations instead of summing partial products).
  """
  lead = tuple(range(a.ndim - 1))
  if like == jnp.bfloat16:
    return lax.dot_general(a.astype(like), b.astype(like), ((lead, lead), ((), ())),
                           preferred_element_type=jnp.float32)
  if a.shape[-1] > b.shape[-1]:
    # XLA's CPU product wants the contracted axes innermost, so it first copies one operand
    # transposed; written as (sum b_t a_t^T)^T the copy is of the narrower one (h [..., H], not
    # dz [..., 4H]).
    return lax.dot_general(b, a, ((lead, lead), ((), ()))).T
  return lax.dot_general(a, b, ((lead, lead), ((), ())))


def sum_outer_T(a: jax.Array, b_T: jax.Array, like=None) -> jax.Array:
  """`sum_outer(a, b)` given b with its last axis first: a [T, ..., i], b_T [j, T, ...] -> [i, j].

  b_T is the layout XLA's CPU product wants for this contraction (the contracted axes
  innermost), so nothing is copied transposed first.
  """
  contracted = (tuple(range(1, b_T.ndim)), tuple(range(a.ndim - 1)))
  if like == jnp.bfloat16:
    return lax.dot_general(a.astype(like), b_T.astype(like), (contracted[::-1], ((), ())),
                           preferred_element_type=jnp.float32)
  return lax.dot_general(b_T, a, (contracted, ((), ()))).T


def store(buffer: jax.Array, t: jax.Array, block: jax.Array, offset: int = 0) -> jax.Array:
  """buffer with buffer[t, ..., offset:offset + n] = block [..., n] (t traced: inside a loop)."""
  return lax.dynamic_update_slice(buffer, block[None], (t,) + (0,) * (block.ndim - 1) + (offset,))


def store_T(buffer: jax.Array, t: jax.Array, h: jax.Array) -> jax.Array:
  """buffer with buffer[:, t] = h with its last axis first: buffer [n, T, ...], h [..., n]."""
  return lax.dynamic_update_slice(buffer, jnp.moveaxis(h, -1, 0)[:, None],
                                  (0, t) + (0,) * (h.ndim - 1))


def shifted(h0: jax.Array, hs: jax.Array) -> jax.Array:
  """h_0..h_{T-1} from h0 and hs = h_1..h_T: [T, ..., H]."""
  return jnp.concatenate([h0[None], hs[:-1]], axis=0)


class InitSpec(NamedTuple):
  """How a network's initial weights are drawn (every cell and the read-out read it).

  dist: "normal" (sigma * N(0, 1), the handout), "uniform" (sigma * U[0, 1), the
  original notebook's np.random.rand) or "pytorch" (U(-1/sqrt(H), 1/sqrt(H)) for
  every weight and bias, H the hidden size: PyTorch's nn.RNN/LSTM/GRU/Linear
  default; sigma is not used). forget_bias: added to an LSTM's forget-gate input
  bias (1 is a common choice).
  """

  sigma: float = 0.01
  dist: str = "normal"
  forget_bias: float = 0.0


def draw(key: jax.Array, shape: tuple[int, ...], spec: InitSpec, hidden_size: int,
         dtype) -> jax.Array:
  """Initial weights of `shape` as `spec` says (see InitSpec)."""
  if spec.dist == "normal":
    return spec.sigma * jax.random.normal(key, shape, dtype)
  if spec.dist == "uniform":
    return spec.sigma * jax.random.uniform(key, shape, dtype)
  if spec.dist == "pytorch":
    bound = 1.0 / math.sqrt(hidden_size)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  raise ValueError(f"dist must be one of {INIT_DISTS}; got {spec.dist!r}.")


def bias(key: jax.Array, shape: tuple[int, ...], spec: InitSpec, hidden_size: int,
         dtype) -> jax.Array:
  """Initial biases: zeros (the course's dists), or U(-1/sqrt(H), 1/sqrt(H)) ("pytorch")."""
  if spec.dist == "pytorch":
    return draw(key, shape, spec, hidden_size, dtype)
  if spec.dist not in INIT_DISTS:
    raise ValueError(f"dist must be one of {INIT_DISTS}; got {spec.dist!r}.")
  return jnp.zeros(shape, dtype)
