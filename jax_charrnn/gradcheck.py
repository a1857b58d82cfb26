"""Three-way gradient check: hand-derived BPTT, `jax.grad`, centred finite differences.

  python -m jax_charrnn.gradcheck [--data_path=book.txt] [--hidden_size=100] [--num_layers=2]

prints, for every parameter of every layer (U, W, b, V, c for the course's
model), the course's relative error ||a - b|| / max(eps, ||a|| + ||b||)
between each pair of gradients, with a pass/fail mark against --tolerance, and
exits with status 1 if any fails.

Everything runs in float64: float32 finite differences are useless at a step
of 1e-4 (relative errors up to 1).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_charrnn import bptt, data, errors, loop, model
from jax_charrnn.config import TrainConfig, setting
from jax_charrnn.model import Model, Params


def relative_error(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> float:
  """The course's ||a - b|| / max(eps, ||a|| + ||b||), Frobenius norms."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(eps, np.linalg.norm(a) + np.linalg.norm(b)))


def numerical_grads(net: Model, params: Params, carry0: Any, inputs: jax.Array,
                    targets: jax.Array, step: float = 1e-4, reduction: str = "sum",
                    entries: int | None = None, seed: int = 0, masks=None) -> tuple[dict, dict]:
  """Centred finite differences (L(θ + δ e_i) - L(θ - δ e_i)) / 2δ of `net.loss`.

  Treats the network as a black box: each entry is perturbed on its own, and
  the perturbed losses are evaluated in vectorised batches (one compiled
  program for every entry of every parameter).

  Args:
    net, params, carry0, inputs, targets, reduction: as for `net.loss` (use float64).
    step: δ.
    entries: None checks every entry; a number checks that many entries per
      parameter, drawn at random (without replacement) with `seed`.

  Returns:
    (grads, mask), NumPy arrays by parameter name (`model.named_leaves`):
    grads has the finite differences at the checked entries and 0 elsewhere;
    mask is 1 at the checked entries.
  """
  rng = np.random.default_rng(seed)
  named = model.named_leaves(params)
  flat, unravel = ravel_pytree(params)  # the same leaf order as named_leaves
  offsets = np.cumsum([0] + [int(leaf.size) for _, leaf in named])
  chosen = []
  for (_, leaf), start in zip(named, offsets):
    n = int(leaf.size)
    idx = np.arange(n) if entries is None or entries >= n else np.sort(
        rng.choice(n, size=entries, replace=False))
    chosen.append(idx)

  # Perturbed losses are evaluated `batch` at a time: as many as fit in about 256 MB of
  # activations (a large network with many streams gets small batches, not an OOM).
  per_loss = 8 * inputs.size * (net.num_layers * net.hidden_size * 4 * net.cell.gates
                                + 3 * net.vocab_size)
  batch = int(max(1, min(256, 2**28 // max(per_loss, 1))))

  @jax.jit
  def differences(v, ids):
    def one(i):
      loss_at = lambda w: net.loss(unravel(w), carry0, inputs, targets, reduction, masks)[0]
      return (loss_at(v.at[i].add(step)) - loss_at(v.at[i].add(-step))) / (2 * step)
    return jax.lax.map(one, ids, batch_size=batch)

  values = np.asarray(differences(flat, jnp.asarray(np.concatenate(
      [idx + start for idx, start in zip(chosen, offsets)]))))
  grads, masks, done = {}, {}, 0
  for (name, leaf), idx in zip(named, chosen):
    g, k = np.zeros(leaf.size), np.zeros(leaf.size)
    g[idx], k[idx] = values[done:done + len(idx)], 1.0
    grads[name], masks[name] = g.reshape(leaf.shape), k.reshape(leaf.shape)
    done += len(idx)
  return grads, masks


@dataclasses.dataclass(frozen=True)
class Row:
  """One parameter's line of the gradient-check table (manual_vs_*: None without a hand BPTT)."""

  name: str
  shape: tuple[int, ...]
  manual_vs_autodiff: float | None
  manual_vs_numerical: float | None
  autodiff_vs_numerical: float
  checked_entries: int

  def errors(self) -> list[float]:
    return [x for x in (self.manual_vs_autodiff, self.manual_vs_numerical,
                        self.autodiff_vs_numerical) if x is not None]


def check(net: Model, params: Params, carry0: Any, inputs: jax.Array, targets: jax.Array, *,
          step: float = 1e-4, eps: float = 1e-6, reduction: str = "sum",
          entries: int | None = None, seed: int = 0, masks=None) -> list[Row]:
  """Compares the three gradients of `net.loss` at one chunk; one Row per parameter.

  Call it with float64 arrays under `jax.enable_x64(True)`. Where `entries`
  limits the finite differences, all three comparisons use only the checked
  entries (the manual/autodiff one too, so that the columns are comparable).
  A cell without a hand BPTT gets the jax.grad/numerical comparison only.
  masks: dropout masks held fixed for all three (`net.dropout_masks`), or None.
  """
  as_numpy = lambda grads: {n: np.asarray(g) for n, g in model.named_leaves(grads)}
  manual = None
  if net.cell.backward is not None:
    _, manual = jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(
        net, params, carry0, inputs, targets, reduction, masks)
    manual = as_numpy(manual)
  _, auto = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(
      params, carry0, inputs, targets, reduction, masks)
  auto = as_numpy(auto)
  numerical, mask = numerical_grads(net, params, carry0, inputs, targets, step, reduction,
                                    entries, seed, masks)
  rows = []
  for name, leaf in model.named_leaves(params):
    a, n, k = auto[name], numerical[name], mask[name]
    m = None if manual is None else manual[name]
    rows.append(Row(name, tuple(leaf.shape),
                    None if m is None else relative_error(m * k, a * k, eps),
                    None if m is None else relative_error(m * k, n, eps),
                    relative_error(a * k, n, eps), int(k.sum())))
  return rows


def format_table(rows: Sequence[Row], tolerance: float, markdown: bool = False) -> str:
  """The check as a text (or Markdown) table with a pass/fail mark per error."""

  def cell(x):
    return "n/a (no hand BPTT)" if x is None else f"{x:.2e} {'ok' if x <= tolerance else 'FAIL'}"

  header = ["param", "shape", "entries", "manual vs jax.grad", "manual vs numerical",
            "jax.grad vs numerical"]
  lines = [[r.name, "x".join(map(str, r.shape)), str(r.checked_entries),
            cell(r.manual_vs_autodiff), cell(r.manual_vs_numerical), cell(r.autodiff_vs_numerical)]
           for r in rows]
  if markdown:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)
  widths = [max(len(x) for x in col) for col in zip(header, *lines)]
  fmt = "  ".join("{:<%d}" % w for w in widths)
  return "\n".join([fmt.format(*header).rstrip()] + [fmt.format(*line).rstrip() for line in lines])


def all_pass(rows: Sequence[Row], tolerance: float) -> bool:
  """True when every error is <= tolerance (a NaN error fails)."""
  return all(x <= tolerance for r in rows for x in r.errors())


def check_text(text: str, vocab: data.Vocab, config: TrainConfig, *, chunk_index: int = 0,
               random_carry: bool = False, step: float = 1e-4, eps: float = 1e-6,
               entries: int | None = None) -> list[Row]:
  """The check at freshly initialised float64 parameters on one chunk of `text`.

  `config` gives the network (cell, layers, hidden size, initialisation,
  seed), the chunk (seq_length, batch_size streams: inputs [T, B]) and the
  loss reduction; its dtype is ignored (float64 here).
  """
  inputs, targets = data.stream_chunks(vocab.encode(text), config.seq_length, config.batch_size)
  chunk_index = min(chunk_index, len(inputs) - 1)
  net = loop.build_model(config, vocab.size)
  with jax.enable_x64(True):
    key = jax.random.key(config.seed)
    params = net.init(key, loop.init_spec(config), jnp.float64)
    carry0 = net.zero_carry((config.batch_size,), jnp.float64)
    if random_carry:
      leaves, tree = jax.tree.flatten(carry0)
      keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
      carry0 = jax.tree.unflatten(tree, [0.5 * jnp.tanh(jax.random.normal(k, x.shape, x.dtype))
                                         for k, x in zip(keys, leaves)])
    x = jnp.asarray(inputs[chunk_index])
    masks = net.dropout_masks(jax.random.fold_in(key, 2), x.shape, jnp.float64)
    return check(net, params, carry0, x, jnp.asarray(targets[chunk_index]), step=step, eps=eps,
                 reduction=config.loss_reduction, entries=entries, seed=config.seed,
                 masks=masks)


# ---- the command line ----

# The settings of the network and the chunk are the trainer's (declared once, in config.py).
SHARED = ("data_path", "lowercase", "raw_newlines", "seq_length", "batch_size", "cell",
          "num_layers", "hidden_size", "dropout", "dropout_mode", "input_dropout", "weight_drop",
          "init_sigma", "init_dist", "forget_bias", "seed",
          "loss_reduction")


@dataclasses.dataclass(frozen=True)
class CheckSettings:
  """The check's own settings."""

  chunk_index: int = setting(0, "Which chunk of the text to check on.", ge=0)
  random_carry: bool = setting(False, "Start from a random carry (hidden state) instead of "
                               "zeros.")
  step: float = setting(1e-4, "Finite-difference step.", gt=0.0, le=1.0)
  eps: float = setting(1e-6, "eps of the relative error's denominator.", ge=0.0, le=1.0)
  tolerance: float = setting(1e-6, "Largest relative error that passes.", ge=0.0, le=1.0)
  entries: int = setting(0, "Finite differences on this many random entries per parameter "
                         "(0: all of them).", ge=0)


def define_flags(flag_values=None) -> None:
  """The trainer's network and chunk settings (SHARED) and the check's own."""
  from jax_charrnn import config as config_lib  # pylint: disable=g-import-not-at-top
  config_lib.define_flags(TrainConfig, flag_values, __name__, names=SHARED)
  config_lib.define_flags(CheckSettings, flag_values, __name__)


def main(argv: Sequence[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import cli, config as config_lib  # pylint: disable=g-import-not-at-top
  cli.no_extra_args(argv)
  config = TrainConfig(**{name: flags.FLAGS[name].value for name in SHARED})
  own = config_lib.from_flags(CheckSettings)
  text = data.load_text(config.data_path, config.lowercase, config.raw_newlines)
  vocab = data.Vocab.from_text(text)
  source = config.data_path or data.BUILTIN_CORPUS_NAME
  net = loop.build_model(config, vocab.size)
  if net.cell.backward is None:
    raise errors.UserError(f"The {config.cell!r} cell has no hand-derived BPTT: there is nothing "
                           "to check three ways.")
  out = sys.stdout
  out.write(f"Gradient check on {source}: {len(text):,} characters, K={vocab.size}, "
            f"{net.describe()}, T={config.seq_length}, B={config.batch_size}, "
            f"sigma={config.init_sigma}, seed={config.seed}, chunk {own.chunk_index}, "
            f"float64, finite-difference step {own.step}\n\n")
  rows = check_text(text, vocab, config, chunk_index=own.chunk_index,
                    random_carry=own.random_carry, step=own.step, eps=own.eps,
                    entries=own.entries or None)
  ok = all_pass(rows, own.tolerance)
  out.write(format_table(rows, own.tolerance) + "\n\n")
  count = sum(len(r.errors()) for r in rows)
  out.write((f"PASS: all {count} relative errors <= {own.tolerance:g}" if ok else
             f"FAIL: some relative errors exceed {own.tolerance:g}") + "\n")
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  define_flags()
  cli.run(main)
