"""Recurrent cells: the interface every cell implements, and the registry.

A cell is one layer of a recurrent network, written as a small module of pure
functions (cells/rnn.py is the model to copy). It owns no loop over layers and
knows nothing about the vocabulary, the read-out, the loss or the optimiser:
`model.py` stacks cells and adds those. The carry is whatever the cell needs
between time steps (`h` for the vanilla RNN, `(h, c)` for an LSTM), a pytree
whose leaves all have the stream axes leading; everything above the cells
(reset, keep, shard, checkpoint, sample, score) treats it as an opaque pytree.

Inputs to a layer are either character ids (the first layer: int [T, ...],
standing for one-hot vectors, so a product with a one-hot vector is a gather
of columns) or the layer below's outputs (float [T, ..., H]).

To add a cell: write cells/<name>.py with the functions of `Cell`, and add one
line to `_REGISTRY` below (or call `register` from your own code).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jax_charrnn.cells import gru, lstm, rnn


@dataclasses.dataclass(frozen=True)
class Cell:
  """One layer's pure functions. Shapes: T time steps, `...` stream axes, H hidden units.

  Attributes:
    name: what `--cell` calls it.
    init: `(key, input_size, hidden_size, *, spec, dtype) -> params` (a pytree;
      `input_size` is K for the first layer, whose inputs are ids; spec an
      `ops.InitSpec`: the distribution, sigma, the LSTM's forget bias).
    zero_carry: `(hidden_size, batch_shape, dtype) -> carry`, zeros.
    output: `carry -> h [..., H]`, what the layer above and the read-out see.
    step: `(params, carry, x_t) -> carry`, one time step (x_t: ids [...] or [..., in]).
    forward: `(params, carry0, xs) -> (hs [T, ..., H], carry_T, residuals)`, a
      whole chunk; `residuals` is what `backward` needs besides hs. None: a
      `lax.scan` over `step` (see `model.layer_forward`).
    backward: hand-derived BPTT of one layer over a chunk,
      `(params, carry0, xs, hs, residuals, dhs) -> (grads, dxs)`: dhs
      [T, ..., H] is dL/dh_t arriving from above (the read-out or the next
      layer), for every t, the carry after the chunk getting no gradient;
      grads has the structure of params; dxs is dL/dx_t for the layer below
      (None when xs are ids). None: the cell has no hand BPTT, and training
      uses jax.grad.
    blocks: G, the number of H-row blocks of the weight matrices ([G·H, in] and
      [G·H, H]): 1 for the RNN, 4 for the LSTM (i, f, g, o), 3 for the GRU (r, z, n);
      PyTorch's layout.
    export: `params -> {"weight_ih", "weight_hh", "bias_ih", "bias_hh": NumPy arrays}`,
      the layer as PyTorch's nn.RNN / nn.LSTM / nn.GRU name it ([G·H, in],
      [G·H, H], [G·H], [G·H]); None: the cell has no PyTorch counterpart.
    trace: `(hs, residuals) -> (units, gates)`, what `forward` computed, by
      name, each [T, ..., H]: units are the values a layer holds or passes on
      (the RNN's and GRU's h; the LSTM's c and h), gates its sigmoid gates
      (the LSTM's i, f, o; the GRU's r, z; values in (0, 1)). For looking
      inside a trained network (visualize.py). None: units {"h": hs}, no gates.
    recurrent: the name of the hidden-to-hidden weight matrix in params ([G·H, H]),
      what weight drop (DropConnect) masks; None: the cell offers no weight drop.
  """

  name: str
  init: Callable[..., Any]
  zero_carry: Callable[..., Any]
  output: Callable[[Any], Any]
  step: Callable[..., Any]
  forward: Callable[..., Any] | None = None
  backward: Callable[..., Any] | None = None
  blocks: int = 1
  export: Callable[[Any], dict] | None = None
  trace: Callable[..., tuple[dict, dict]] | None = None
  recurrent: str | None = None


_REGISTRY: dict[str, Cell] = {
    "rnn": Cell("rnn", rnn.init, rnn.zero_carry, rnn.output, rnn.step, rnn.forward, rnn.backward,
                blocks=1, export=rnn.export, trace=rnn.trace, recurrent="W"),
    "lstm": Cell("lstm", lstm.init, lstm.zero_carry, lstm.output, lstm.step, lstm.forward,
                 lstm.backward, blocks=4, export=lstm.export, trace=lstm.trace,
                 recurrent="W_hh"),
    "gru": Cell("gru", gru.init, gru.zero_carry, gru.output, gru.step, gru.forward, gru.backward,
                blocks=3, export=gru.export, trace=gru.trace, recurrent="W_hh"),
}


def register(cell: Cell) -> Cell:
  """Makes `cell` available by name (e.g. a cell defined in a test or a notebook)."""
  _REGISTRY[cell.name] = cell
  return cell


def names() -> tuple[str, ...]:
  return tuple(_REGISTRY)


def get(name: str) -> Cell:
  """The registered cell called `name` (KeyError naming the known cells otherwise)."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise KeyError(f"unknown cell {name!r}; known cells: {', '.join(_REGISTRY)}") from None
