"""The network: a one-hot input, N stacked layers of one recurrent cell, a linear read-out.

  x_t = onehot(input character t)                     (K)
  h^1_t = cell(h^1_{t-1}, x_t)   h^k_t = cell(h^k_{t-1}, h^{k-1}_t)     (H each)
  o_t = V h^N_t + c              p_t = softmax(o_t)
  loss = sum_t -log p_t[y_t]     (or the mean over characters)

V [K, H], c [K]; K = vocabulary size, H = hidden size (the course's m). With
the course's cell (cells/rnn.py: a_t = W h_{t-1} + U x_t + b, h_t = tanh(a_t))
and one layer, this is the course's model, with its names U, W, b (the cell)
and V, c (the read-out).

Every function takes one stream (inputs [T], carry leaves [H]) or a batch of
streams (inputs [T, B], carry leaves [B, H]): the stream axis rides along.
The carry is a tuple with one cell carry per layer. Nothing here changes
state; `Model` only holds the shapes and the cell.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_charrnn import cells
from jax_charrnn.cells import ops

REDUCTIONS = ("sum", "mean")
DROPOUT_MODES = ("per_step", "locked")


class Masks(NamedTuple):
  """One update's regularisation masks (`Model.dropout_masks`), each of 0 and 1 / (1 - p).

  hidden: (dropout) one per input of the layers above the first and one for the
    read-out's input, each [T, ..., H]; None without dropout.
  inputs: (input dropout) [T, ..., K], multiplying the one-hot inputs; None without.
  weights: (weight drop, DropConnect) one per layer, shaped as its hidden-to-hidden
    weight matrix ([G·H, H]); None without.
  With dropout_mode "locked" a hidden or input mask is the same at every t.
  """

  hidden: tuple | None = None
  inputs: jax.Array | None = None
  weights: tuple | None = None


class Params(NamedTuple):
  """The network's parameters: the layers' (bottom first) and the read-out's."""

  layers: tuple   # one cell Params per layer
  V: jax.Array    # [K, H] hidden -> output
  c: jax.Array    # [K]    output bias


@dataclasses.dataclass(frozen=True)
class Model:
  """The shapes and the cell of a network; its methods are pure functions of params.

  The regularisers, in training only, each multiplying by masks of 0 and
  1 / (1 - p) drawn per update (`dropout_masks`); p = 0 draws none:

    dropout        char-rnn's placement: the inputs of the layers above the first
                   and the read-out's input.
    dropout_mode   per_step (a fresh mask at every t) or locked (variational
                   dropout, AWD-LSTM's: one mask per stream per layer, the same at
                   every t of the chunk); for dropout and input_dropout.
    input_dropout  on the one-hot inputs x_t (AWD-LSTM's dropouti): the first
                   layer reads onehot(x_t) ⊙ m_t; locked, a character type is
                   dropped for the whole chunk of a stream.
    weight_drop    DropConnect on every layer's hidden-to-hidden weights
                   (AWD-LSTM's weight drop): W_hh ⊙ M, one M per layer per update.

  compute_dtype "bfloat16" is mixed precision (`compute`): the matrix products read
  bfloat16 operands and sum in float32; the parameters, the cells' elementwise arithmetic,
  the loss and the gradients stay in the parameters' float32.
  """

  cell: cells.Cell
  vocab_size: int       # K
  hidden_size: int      # H
  num_layers: int = 1
  dropout: float = 0.0
  dropout_mode: str = "per_step"
  input_dropout: float = 0.0
  weight_drop: float = 0.0
  compute_dtype: str = "float32"

  @property
  def regularised(self) -> bool:
    """Whether training draws masks (`dropout_masks` is not None)."""
    return bool(self.dropout or self.input_dropout or self.weight_drop)

  def init(self, key: jax.Array, spec: ops.InitSpec = ops.InitSpec(),
           dtype=jnp.float32) -> Params:
    """Each layer as its cell initialises it; V as spec says (sigma * N(0, 1) by default); c = 0
    (U(-1/sqrt(H), 1/sqrt(H)) for V and c with spec.dist "pytorch", as nn.Linear)."""
    K, H = self.vocab_size, self.hidden_size
    keys = jax.random.split(key, self.num_layers + 1)
    layers = tuple(self.cell.init(keys[k], K if k == 0 else H, H, spec=spec, dtype=dtype)
                   for k in range(self.num_layers))
    return Params(layers=layers, V=ops.draw(keys[-1], (K, H), spec, H, dtype),
                  c=ops.bias(jax.random.fold_in(keys[-1], 1), (K,), spec, H, dtype))

  def dropout_masks(self, key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32):
    """One update's `Masks` for a chunk of inputs `shape` ([T] or [T, B]); None without
    regularisation. The dropout masks are drawn from `key` as before the other regularisers
    (a run with only dropout draws the same masks); the others from keys folded from it."""
    if not self.regularised:
      return None

    def draw(k, p, size):
      """0 or 1 / (1 - p), [*shape, size]: per step, or one [..., size] for every t (locked)."""
      keep = 1.0 - p
      if self.dropout_mode == "locked":
        m = jax.random.bernoulli(k, keep, (*shape[1:], size)).astype(dtype) / keep
        return jnp.broadcast_to(m, (*shape, size))
      return jax.random.bernoulli(k, keep, (*shape, size)).astype(dtype) / keep

    hidden = inputs = weights = None
    if self.dropout:
      hidden = tuple(draw(k, self.dropout, self.hidden_size)
                     for k in jax.random.split(key, self.num_layers))
    if self.input_dropout:
      inputs = draw(jax.random.fold_in(key, 0x1D), self.input_dropout, self.vocab_size)
    if self.weight_drop:
      keep, H = 1.0 - self.weight_drop, self.hidden_size
      keys = jax.random.split(jax.random.fold_in(key, 0x3D), self.num_layers)
      weights = tuple(jax.random.bernoulli(k, keep, (self.cell.blocks * H, H)).astype(dtype) / keep
                      for k in keys)
    return Masks(hidden=hidden, inputs=inputs, weights=weights)

  def first_inputs(self, inputs: jax.Array, masks: Masks | None, dtype) -> jax.Array:
    """The first layer's inputs: the ids (one-hot, gathered), or with input dropout the
    vectors onehot(x_t) ⊙ m_t [T, ..., K] (an id outside the vocabulary: zeros)."""
    if masks is None or masks.inputs is None:
      return inputs
    return jax.nn.one_hot(inputs, self.vocab_size, dtype=dtype) * masks.inputs

  def layer_params(self, p: Any, k: int, masks: Masks | None) -> Any:
    """Layer k's parameters as the update uses them: with weight drop, W_hh ⊙ M_k."""
    if masks is None or masks.weights is None:
      return p
    name = self.cell.recurrent
    return p._replace(**{name: getattr(p, name) * masks.weights[k]})

  def compute(self, p: Any) -> Any:
    """p (parameters, a layer's or one matrix) as the products read it: with compute_dtype
    bfloat16 every weight matrix (2-D leaf) rounded to bfloat16, so that `ops.dot` rounds the
    other operand too and sums in float32, as torch.autocast does; the biases as they are.
    Otherwise p itself."""
    if self.compute_dtype != "bfloat16":
      return p
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16) if a.ndim == 2 else a, p)

  def full_precision(self) -> Model:
    """The network with float32 products (as it is without mixed precision): how held-out
    scores and the commands that read a trained run compute."""
    return dataclasses.replace(self, compute_dtype="float32")

  def zero_carry(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> tuple:
    """Every layer's zero carry, leaves [*batch_shape, ...]."""
    return tuple(self.cell.zero_carry(self.hidden_size, batch_shape, dtype)
                 for _ in range(self.num_layers))

  def layer_forward(self, p: Any, carry0: Any, xs: jax.Array) -> tuple[jax.Array, Any, Any]:
    """One layer over a chunk: (hs [T, ..., H], carry_T, residuals)."""
    if self.cell.forward is not None:
      return self.cell.forward(p, carry0, xs)
    cell = self.cell

    def step(carry, x_t):
      carry = cell.step(p, carry, x_t)
      return carry, cell.output(carry)

    carry_T, hs = lax.scan(step, carry0, xs)
    return hs, carry_T, None

  def hidden_states(self, params: Params, carry0: tuple, inputs: jax.Array, masks=None):
    """Every layer's outputs: ([hs of each layer], carry_T, [residuals of each layer]).

    masks: `dropout_masks` (training), or None; masks.hidden[k - 1] multiplies
    layer k's outputs where layer k + 1 reads them (see `Masks` for the others).
    """
    xs = self.first_inputs(inputs, masks, params.V.dtype)
    all_hs, carry_T, residuals = [], [], []
    for k, (p, carry) in enumerate(zip(params.layers, carry0)):
      if k > 0 and masks is not None and masks.hidden is not None:
        xs = xs * masks.hidden[k - 1]
      # Weight drop's mask first, then the compute dtype: W_hh ⊙ M is what the product reads.
      hs, last, res = self.layer_forward(self.compute(self.layer_params(p, k, masks)), carry, xs)
      all_hs.append(hs)
      carry_T.append(last)
      residuals.append(res)
      xs = hs  # layer k's outputs are layer k+1's inputs
    return all_hs, tuple(carry_T), residuals

  def forward(self, params: Params, carry0: tuple, inputs: jax.Array,
              masks=None) -> tuple[jax.Array, tuple]:
    """The forward pass over a chunk.

    Args:
      params: the network's parameters.
      carry0: the carry before the chunk (one per layer).
      inputs: int [T] or [T, B], the input character ids.
      masks: dropout masks (`dropout_masks`), or None.

    Returns:
      (logits, carry_T): o_1..o_T [T, (B,) K] and the carry after the chunk.
    """
    all_hs, carry_T, _ = self.hidden_states(params, carry0, inputs, masks)
    return self.read_out(params, self.top(all_hs, masks)), carry_T

  def top(self, all_hs: list, masks: Masks | None) -> jax.Array:
    """The read-out's input: the top layer's outputs (times its dropout mask)."""
    if masks is None or masks.hidden is None:
      return all_hs[-1]
    return all_hs[-1] * masks.hidden[-1]

  def read_out(self, params: Params, hs: jax.Array) -> jax.Array:
    """o_t = V h_t + c for all t at once: hs [..., H] -> logits [..., K]."""
    return ops.dot(hs, self.compute(params.V).T) + params.c

  def trace(self, params: Params, carry0: tuple, inputs: jax.Array) -> tuple[jax.Array, tuple,
                                                                            tuple]:
    """`forward` without dropout, keeping what every layer computed, to look inside it.

    Args:
      params, carry0, inputs: as for `forward`.

    Returns:
      (logits, carry_T, layers): as `forward`, and for each layer (bottom
      first) {"units": {name: [T, (B,) H]}, "gates": {name: [T, (B,) H]}}, the
      cell's named values (`cells.Cell.trace`: h, the LSTM's c; the sigmoid
      gates). A cell without `trace`: units {"h": h_t}, no gates.
    """
    all_hs, carry_T, residuals = self.hidden_states(params, carry0, inputs)
    layers = []
    for hs, res in zip(all_hs, residuals):
      units, gates = ({"h": hs}, {}) if self.cell.trace is None else self.cell.trace(hs, res)
      layers.append({"units": units, "gates": gates})
    return self.read_out(params, all_hs[-1]), carry_T, tuple(layers)

  def loss(self, params: Params, carry0: tuple, inputs: jax.Array, targets: jax.Array,
           reduction: str = "sum", masks=None) -> tuple[jax.Array, tuple]:
    """Cross-entropy of the chunk: sum (or mean) over t (and streams) of -log p_t[y_t].

    Args:
      params, carry0, inputs, masks: as for `forward`.
      targets: int, same shape as inputs.
      reduction: "sum" (the course) or "mean" (per character).

    Returns:
      (loss, carry_T): a scalar and the carry to pass on, so that
      `jax.grad(net.loss, has_aux=True)` gives the gradients and the state to carry.
    """
    logits, carry_T = self.forward(params, carry0, inputs, masks)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)
    total = jnp.sum(nll)
    if reduction == "mean":
      total = total / targets.size
    elif reduction != "sum":
      raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
    return total, carry_T

  def step(self, params: Params, carry: tuple, x: jax.Array) -> tuple[jax.Array, tuple]:
    """One character through the network: (logits [..., K], the new carry); x int [...]."""
    new = []
    for p, c in zip(params.layers, carry):
      c = self.cell.step(self.compute(p), c, x)
      new.append(c)
      x = self.cell.output(c)
    return self.read_out(params, x), tuple(new)

  def describe(self) -> str:
    """E.g. "1 layer of rnn, H = 100" or "2 layers of lstm, H = 256, dropout 0.2"."""
    layers = f"{self.num_layers} layer{'s' if self.num_layers > 1 else ''}"
    drop = f", dropout {self.dropout:g}" if self.dropout else ""
    if self.dropout and self.dropout_mode == "locked":
      drop += " (locked)"
    drop += f", input dropout {self.input_dropout:g}" if self.input_dropout else ""
    drop += f", weight drop {self.weight_drop:g}" if self.weight_drop else ""
    return f"{layers} of {self.cell.name}, H = {self.hidden_size}{drop}"


def param_count(params: Any) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


def named_leaves(params: Params) -> list[tuple[str, jax.Array]]:
  """(name, array) for every parameter, in `jax.tree.leaves` order: U, W, b, V, c for the
  course's network; layer1.U, ..., layer2.U, ..., V, c with more layers."""
  multi = len(params.layers) > 1
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if path[0].name == "layers":
      inner = jax.tree_util.keystr(path[2:], simple=True, separator=".")
      out.append((f"layer{path[1].idx + 1}.{inner}" if multi else inner, leaf))
    else:
      out.append((path[0].name, leaf))
  return out


def replace_leaf(params: Params, name: str, value: jax.Array) -> Params:
  """params with the leaf called `name` (see `named_leaves`) replaced by value."""
  names = [n for n, _ in named_leaves(params)]
  leaves, tree = jax.tree.flatten(params)
  leaves[names.index(name)] = value
  return jax.tree.unflatten(tree, leaves)


def first_stream(carry: Any) -> Any:
  """Stream 0 of a batched carry (leaves [B, ...] -> [...])."""
  return jax.tree.map(lambda x: x[0], carry)


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


@functools.partial(jax.jit, static_argnames=("net", "n"))
def sample_on(net: Model, params: Params, carry0: tuple, x0: jax.Array, n: int, key: jax.Array,
              temperature: float | jax.Array = 1.0, top_p: float | jax.Array = 1.0):
  """`sample`, also returning where the text stands: (ids, carry after the last input, last id),
  so that a long text can be drawn in pieces, each going on from the one before."""
  dtype = params.V.dtype
  temperature = jnp.asarray(temperature, dtype)
  top_p = jnp.asarray(top_p, dtype)

  def step(carry, key_t):
    c, x = carry
    logits, c = net.step(params, c, x)
    greedy = jnp.argmax(logits, axis=-1)
    scaled = _nucleus(logits / jnp.where(temperature > 0, temperature, 1.0), top_p)
    drawn = jax.random.categorical(key_t, scaled, axis=-1)
    x = jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)
    return (c, x), x

  (carry, x), ids = lax.scan(step, (carry0, jnp.asarray(x0, jnp.int32)), jax.random.split(key, n))
  return ids, carry, x


def sample(net: Model, params: Params, carry0: tuple, x0: jax.Array, n: int, key: jax.Array,
           temperature: float | jax.Array = 1.0, top_p: float | jax.Array = 1.0) -> jax.Array:
  """Draws n characters, feeding each drawn character back in (jitted; n is static).

  Args:
    net: the network's shapes and cell.
    params: its parameters.
    carry0: the carry before x0 (leaves [...] for one stream, [B, ...] for B).
    x0: the first input id, int [] (or [B]).
    n: how many characters to draw.
    key: PRNG key; the same key gives the same text.
    temperature: divides the logits; 0 means always take the most likely character.
    top_p: nucleus sampling: draw only from the most likely characters whose
      probabilities add up to at least top_p (1.0 keeps them all).

  Returns:
    ids: int32 [n] (or [n, B]), the drawn characters (x0 not included).
  """
  return sample_on(net, params, carry0, x0, n, key, temperature, top_p)[0]
