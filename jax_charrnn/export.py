"""A trained model as plain NumPy arrays under PyTorch's names, loadable without JAX.

  python -m jax_charrnn.export --workdir=runs/goblet_val --out=model.npz [--which=best|latest]
      [--overwrite]

An existing --out file is replaced only with --overwrite (paths.py's rules).

model.npz holds float32 arrays named as the state_dict of PyTorch's nn.RNN
(tanh) / nn.LSTM / nn.GRU with an nn.Linear read-out:

  rnn.weight_ih_l{k} [G·H, in]   rnn.weight_hh_l{k} [G·H, H]   (layer k = 0, 1, ...)
  rnn.bias_ih_l{k}   [G·H]       rnn.bias_hh_l{k}   [G·H]
  decoder.weight     [K, H]      decoder.bias       [K]

plus `cell` (rnn, lstm or gru), `unit` (char, or byte: then vocab[i] is the character chr(b)
of byte b) and `vocab` (the characters in id order, one
string each). Layer 0 reads a one-hot vector of the K characters, so
rnn.weight_ih_l0 is [G·H, K]. The course's RNN: U -> rnn.weight_ih_l0, W ->
rnn.weight_hh_l0, b -> rnn.bias_ih_l0, zeros -> rnn.bias_hh_l0, V ->
decoder.weight, c -> decoder.bias. docs/evaluation.md shows loading it into PyTorch.
"""

from __future__ import annotations

import sys
from typing import Sequence

from jax_charrnn import errors

if __name__ == "__main__":  # before JAX loads: Ctrl-C at any moment ends the command at once
  errors.stop_at_once_on_ctrl_c()

import numpy as np  # pylint: disable=wrong-import-position

from jax_charrnn import data  # pylint: disable=wrong-import-position
from jax_charrnn.model import Model, Params  # pylint: disable=wrong-import-position


def state_dict(net: Model, params: Params, vocab: data.Vocab) -> dict[str, np.ndarray]:
  """The arrays of model.npz (see the module docstring)."""
  if net.cell.export is None:
    raise ValueError(f"the {net.cell.name!r} cell has no PyTorch counterpart to export to")
  out = {}
  for k, layer in enumerate(params.layers):
    for name, value in net.cell.export(layer).items():
      out[f"rnn.{name}_l{k}"] = np.asarray(value, np.float32)
  out["decoder.weight"] = np.asarray(params.V, np.float32)
  out["decoder.bias"] = np.asarray(params.c, np.float32)
  out["cell"] = np.array(net.cell.name)
  out["vocab"] = np.array(list(vocab.chars))
  out["unit"] = np.array(vocab.unit)
  return out


# ---- the command line ----

_OWN: dict = {}


def define_flags(flag_values=None) -> dict:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import config  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  return {
      "workdir": flags.DEFINE_string("workdir", None, "Directory of a training run.", **kw),
      "which": flags.DEFINE_enum("which", "best", ["best", "latest"], "Export the best "
                                 "parameters or the latest ones.", **kw),
      "out": flags.DEFINE_string("out", "model.npz", "Where to write the NumPy archive (.npz is "
                                 "added to a name without it). Not a directory; an existing file "
                                 "is refused unless --overwrite.", **kw),
      "overwrite": flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.", **kw),
  }


def main(argv: Sequence[str]) -> None:
  from jax_charrnn import cli, paths  # pylint: disable=g-import-not-at-top
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
  # The file is checked before the run is read: a wrong --out costs nothing.
  out = paths.output_file(o["out"], suffix=".npz", overwrite=o["overwrite"])
  run = cli.open_run(o["workdir"], o["which"])
  try:
    arrays = state_dict(run.net, run.params, run.vocab)
  except ValueError as e:
    raise errors.UserError(f"Cannot export {run.workdir!r}: {e}.") from None
  paths.write_out(out, lambda f: np.savez(f, **arrays))
  sys.stdout.write(f"Wrote {out}: {run.describe()} of {run.workdir}, {run.net.describe()}, "
                   f"K = {run.vocab.size}, as PyTorch names them "
                   f"({', '.join(k for k in arrays if k not in ('cell', 'vocab', 'unit'))}).\n")


if __name__ == "__main__":
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  _OWN.update(define_flags())
  cli.run(main)
