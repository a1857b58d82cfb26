"""The network in visualize's page: its weights and starting state as the page's JavaScript
(visualize_write.js) reads them, in the run's own precision or a compact encoding, and what a
compact encoding changes.

The page runs the network's step in plain JavaScript (float64 arithmetic) from the weights under
PyTorch's names (`export.state_dict`: the same arrays as the cells' own, for rnn, lstm and gru,
stacked), starting where `sample` starts: the run's carry and the character that came next.
Each weight matrix W [rows, cols] goes in the page in one of

  exact    the run's dtype (float32 or float64): at temperature 0 the page writes what
           `sample --temperature=0` writes (the same argmax at every step, unless two
           characters' logits lie within rounding of each other)
  float16  IEEE half precision, 2 bytes a weight (relative error <= 2^-11)
  int8     q = round(W / s) in [-127, 127] with one float32 scale s = max|row| / 127 per row,
           1 byte a weight (weight-only round-to-nearest quantisation; error <= s / 2)

and "auto" picks the most exact one whose weights fit WEIGHT_BYTES, which keeps a 2 x 512 LSTM's
page under 10 MB. Biases, the read-out's bias and the carry are always exact (they are small).
What a compact encoding changes is measured, not guessed (`effect`): the held-out score with
the page's weights, and how far its greedy text agrees with sample's.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import jax
import numpy as np

from jax_charrnn import generate
from jax_charrnn.model import Params
from jax_charrnn.score import score_ids

ENCODINGS = ("auto", "exact", "float16", "int8", "none")
WEIGHT_BYTES = 4 << 20   # "auto": the most exact encoding whose weight matrices fit this
GREEDY_CHARS = 500       # the greedy text compared with sample's (`effect`)
_BYTES = {"float16": 2, "int8": 1}


def _b64(a: np.ndarray) -> str:
  """Little-endian bytes of `a`, base64 (the page reads them into a typed array)."""
  return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"))
                          .tobytes()).decode("ascii")


def int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(q int8 [rows, cols], s float32 [rows]): W ~ q * s, s = max|row| / 127 (0 for a zero row)."""
  w = np.asarray(w, np.float32)
  s = (np.max(np.abs(w), axis=1) / np.float32(127)).astype(np.float32)
  safe = np.where(s > 0, s, np.float32(1))
  q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
  return q, s


def round_trip(w: np.ndarray, encoding: str) -> np.ndarray:
  """W as the page decodes it, in W's dtype: what the page's network computes with."""
  w = np.asarray(w)
  if encoding == "exact":
    return w
  if encoding == "float16":
    return w.astype(np.float16).astype(w.dtype)
  if encoding == "int8":
    q, s = int8_rows(w)
    return (q.astype(np.float32) * s[:, None]).astype(w.dtype)  # float32 products, as the page
  raise ValueError(f"no encoding {encoding!r}")


def encode(w: np.ndarray, encoding: str) -> dict[str, Any]:
  """One array for the page: {"dtype", "shape", "data" (base64), "scale" (int8 only)}."""
  w = np.asarray(w)
  if encoding == "int8":
    q, s = int8_rows(w)
    return {"dtype": "int8", "shape": list(w.shape), "data": _b64(q), "scale": _b64(s)}
  a = w.astype(np.float16) if encoding == "float16" else w
  return {"dtype": a.dtype.name, "shape": list(w.shape), "data": _b64(a)}


def matrices(params: Params) -> list[np.ndarray]:
  """The weight matrices (every 2-D leaf: the cells' W_ih, W_hh or U, W, and V)."""
  return [np.asarray(a) for a in jax.tree.leaves(params) if np.ndim(a) == 2]


def choose(params: Params, asked: str) -> str:
  """The encoding to use: `asked`, or for "auto" the most exact that fits WEIGHT_BYTES."""
  if asked != "auto":
    return asked
  count = sum(a.size for a in matrices(params))
  exact = sum(a.nbytes for a in matrices(params))
  for encoding, size in (("exact", exact), ("float16", 2 * count)):
    if size <= WEIGHT_BYTES:
      return encoding
  return "int8"


def weight_bytes(params: Params, encoding: str) -> int:
  """Bytes of the weight matrices in an encoding (before base64)."""
  mats = matrices(params)
  if encoding == "exact":
    return sum(a.nbytes for a in mats)
  per = sum(a.size for a in mats) * _BYTES[encoding]
  return per + (4 * sum(a.shape[0] for a in mats) if encoding == "int8" else 0)


def page_params(params: Params, encoding: str) -> Params:
  """The parameters the page computes with: every weight matrix through `round_trip`."""
  return jax.tree.map(lambda a: np.asarray(round_trip(a, encoding)) if np.ndim(a) == 2
                      else np.asarray(a), params)


def supported(net) -> bool:
  """Whether the page's JavaScript has this network's cell (a plug-in cell it has not)."""
  return net.cell.export is not None and net.cell.name in ("rnn", "lstm", "gru")


def network(run, encoding: str) -> dict[str, Any] | None:
  """The page's network (a saved.Saved run): weights, start and vocabulary; None for a cell
  without PyTorch names (a plug-in cell: the page has no JavaScript for it) or "none"."""
  net, params = run.net, jax.device_get(run.params)
  if encoding == "none" or not supported(net):
    return None
  enc = lambda a: encode(a, encoding if np.ndim(a) == 2 else "exact")
  layers = [{name: enc(v) for name, v in net.cell.export(layer).items()}
            for layer in params.layers]
  carry = []
  for c in jax.device_get(run.carry):
    named = c._asdict() if hasattr(c, "_asdict") else {"h": c}
    carry.append({k: encode(np.asarray(v), "exact") for k, v in named.items()})
  vocab = run.vocab
  return {"cell": net.cell.name, "hidden_size": net.hidden_size, "encoding": encoding,
          "unit": vocab.unit, "codes": [ord(ch) for ch in vocab.chars],
          "layers": layers, "decoder": {"weight": enc(params.V), "bias": enc(params.c)},
          "carry": carry, "x0": int(run.x0)}


@dataclasses.dataclass(frozen=True)
class Effect:
  """What the page's weights change (equal figures for "exact")."""

  encoding: str
  weight_bytes: int        # the weight matrices in the page, before base64
  bits_exact: float        # the shown text's bits/char with the run's weights
  bits_page: float         # ... with the page's
  greedy_same: int | None  # of GREEDY_CHARS greedy characters from the run's state drawn by
  #                          the package with the page's weights, how many agree with sample
  #                          --temperature=0's before the first difference (None: exact)

  def sentence(self) -> str:
    """What the Write panel's weights are, and what they change, in words."""
    size = f"{self.weight_bytes / 2**20:.1f} MB"
    if self.encoding == "exact":
      return (f"weights as the run holds them ({size}): at temperature 0 it writes what "
              "sample --temperature=0 writes (it computes in float64: the two could part only "
              "where rounding reorders two nearly equal characters)")
    what = {"float16": "float16", "int8": "int8 with a float32 scale per row"}[self.encoding]
    agree = ("all of the first" if self.greedy_same == GREEDY_CHARS else
             f"the first {self.greedy_same:,} of")
    return (f"weights as {what} ({size}): {self.bits_page:.4f} bits/char over the shown text "
            f"with them against {self.bits_exact:.4f}; greedy, the network with them agrees "
            f"with sample --temperature=0 for {agree} {GREEDY_CHARS} characters")


def effect(run, encoding: str, ids: np.ndarray, unknown: dict, bits_exact: float,
           dtype) -> Effect:
  """Measures what `encoding` changes for this run over the shown text (ids)."""
  size = weight_bytes(run.params, encoding)
  if encoding == "exact":
    return Effect(encoding, size, bits_exact, bits_exact, None)
  page = page_params(jax.device_get(run.params), encoding)  # quantised once, used twice
  bits = score_ids(run.net, jax.tree.map(lambda a: np.asarray(a, dtype), page), ids,
                   unknown).bits_per_char
  key = jax.random.key(0)  # unused at temperature 0, which is greedy
  texts = [generate.generate(run.net, p, run.vocab, run.carry, run.x0, GREEDY_CHARS, key, 0.0)[0]
           for p in (run.params, page)]
  same = next((i for i, (a, b) in enumerate(zip(*texts)) if a != b), GREEDY_CHARS)
  return Effect(encoding, size, bits_exact, bits, same)


def summary(run, encoding: str, ids: np.ndarray, unknown: dict, bits_exact: float,
            dtype) -> dict[str, Any]:
  """The page's "write" entry: the Effect's fields and its sentence, or why there is no panel."""
  if encoding == "none":
    return {"why": "not written (--weights=none)"}
  if not supported(run.net):
    return {"why": f"none: the {run.net.cell.name} cell has no forward in the page's "
                   "JavaScript (rnn, lstm and gru have)"}
  e = effect(run, encoding, ids, unknown, bits_exact, dtype)
  return dict(dataclasses.asdict(e), sentence=e.sentence())
