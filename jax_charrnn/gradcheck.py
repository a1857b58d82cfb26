"""Three-way gradient check: hand-derived BPTT, `jax.grad`, centred finite differences.

  python -m jax_charrnn.gradcheck [--data_path=book.txt] [--hidden_size=100]

prints, for each of U, W, V, b, c, the course's relative error
||a - b|| / max(eps, ||a|| + ||b||) between each pair of gradients, with a
pass/fail mark against --tolerance, and exits with status 1 if any fails.

Everything runs in float64: float32 finite differences are useless at a step
of 1e-4 (relative errors up to 1).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_charrnn import bptt, data, errors, model
from jax_charrnn.model import Params


def relative_error(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> float:
  """The course's ||a - b|| / max(eps, ||a|| + ||b||), Frobenius norms."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(eps, np.linalg.norm(a) + np.linalg.norm(b)))


def numerical_grads(params: Params, h0: jax.Array, inputs: jax.Array, targets: jax.Array,
                    step: float = 1e-4, reduction: str = "sum", entries: int | None = None,
                    seed: int = 0) -> tuple[Params, Params]:
  """Centred finite differences (L(θ + δ e_i) - L(θ - δ e_i)) / 2δ of `model.loss`.

  Treats the model as a black box: each entry is perturbed on its own, and
  the perturbed losses are evaluated in vectorised batches.

  Args:
    params, h0, inputs, targets, reduction: as for `model.loss` (use float64).
    step: δ.
    entries: None checks every entry; a number checks that many entries per
      parameter, drawn at random (without replacement) with `seed`.

  Returns:
    (grads, mask): grads has the finite differences at the checked entries
    and 0 elsewhere; mask is 1 at the checked entries.
  """
  rng = np.random.default_rng(seed)

  def loss_of(leaf_name, flat_leaf):
    p = params._replace(**{leaf_name: flat_leaf.reshape(getattr(params, leaf_name).shape)})
    return model.loss(p, h0, inputs, targets, reduction)[0]

  grads, masks = {}, {}
  for name in Params._fields:
    leaf = getattr(params, name)
    flat = leaf.reshape(-1)
    if entries is None or entries >= flat.size:
      idx = np.arange(flat.size)
    else:
      idx = np.sort(rng.choice(flat.size, size=entries, replace=False))

    def diff(i, flat=flat, name=name):
      plus = loss_of(name, flat.at[i].add(step))
      minus = loss_of(name, flat.at[i].add(-step))
      return (plus - minus) / (2 * step)

    values = jax.jit(lambda ids, diff=diff: jax.lax.map(diff, ids, batch_size=256))(jnp.asarray(idx))
    grads[name] = jnp.zeros_like(flat).at[idx].set(values).reshape(leaf.shape)
    masks[name] = jnp.zeros_like(flat).at[idx].set(1.0).reshape(leaf.shape)
  return Params(**grads), Params(**masks)


@dataclasses.dataclass(frozen=True)
class Row:
  """One parameter's line of the gradient-check table."""

  name: str
  shape: tuple[int, ...]
  manual_vs_autodiff: float
  manual_vs_numerical: float
  autodiff_vs_numerical: float
  checked_entries: int


def check(params: Params, h0: jax.Array, inputs: jax.Array, targets: jax.Array, *,
          step: float = 1e-4, eps: float = 1e-6, reduction: str = "sum",
          entries: int | None = None, seed: int = 0) -> list[Row]:
  """Compares the three gradients of `model.loss` at one chunk; one Row per parameter.

  Call it with float64 arrays under `jax.enable_x64(True)`. Where `entries`
  limits the finite differences, all three comparisons use only the checked
  entries (the manual/autodiff one too, so that the columns are comparable).
  """
  (_, _), manual = jax.jit(bptt.loss_and_grads, static_argnums=4)(params, h0, inputs, targets, reduction)
  (_, _), auto = jax.jit(jax.value_and_grad(model.loss, has_aux=True), static_argnums=4)(
      params, h0, inputs, targets, reduction)
  numerical, mask = numerical_grads(params, h0, inputs, targets, step, reduction, entries, seed)
  rows = []
  for name in Params._fields:
    m, a, n, k = (getattr(t, name) for t in (manual, auto, numerical, mask))
    rows.append(Row(name, tuple(m.shape), relative_error(m * k, a * k, eps),
                    relative_error(m * k, n, eps), relative_error(a * k, n, eps), int(k.sum())))
  return rows


def format_table(rows: Sequence[Row], tolerance: float, markdown: bool = False) -> str:
  """The check as a text (or Markdown) table with a pass/fail mark per error."""

  def cell(x):
    return f"{x:.2e} {'ok' if x <= tolerance else 'FAIL'}"

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
  return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines])


def all_pass(rows: Sequence[Row], tolerance: float) -> bool:
  """True when every error is <= tolerance (a NaN error fails)."""
  return all(x <= tolerance for r in rows
             for x in (r.manual_vs_autodiff, r.manual_vs_numerical, r.autodiff_vs_numerical))


def check_text(text: str, vocab: data.Vocab, *, hidden_size: int, seq_length: int,
               sigma: float, dist: str = "normal", seed: int = 0, chunk_index: int = 0,
               random_h0: bool = False, step: float = 1e-4, eps: float = 1e-6,
               reduction: str = "sum", entries: int | None = None,
               batch_size: int = 0) -> list[Row]:
  """The check at freshly initialised float64 parameters on one chunk of `text`.

  batch_size: 0 checks one stream (inputs [T]); B > 0 checks B streams at once
  (inputs [T, B], the trainer's layout, the loss summed or averaged over them).
  """
  if batch_size:
    inputs, targets = data.stream_chunks(vocab.encode(text), seq_length, batch_size)
  else:
    inputs, targets = data.chunks(vocab.encode(text), seq_length)
  chunk_index = min(chunk_index, len(inputs) - 1)
  with jax.enable_x64(True):
    key = jax.random.key(seed)
    params = model.init_params(key, vocab.size, hidden_size, sigma, dist, dtype=jnp.float64)
    h_shape = (batch_size, hidden_size) if batch_size else (hidden_size,)
    h0 = jnp.zeros(h_shape, jnp.float64)
    if random_h0:
      h0 = jnp.tanh(jax.random.normal(jax.random.fold_in(key, 1), h_shape, jnp.float64))
    return check(params, h0, jnp.asarray(inputs[chunk_index]), jnp.asarray(targets[chunk_index]),
                 step=step, eps=eps, reduction=reduction, entries=entries, seed=seed)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {' '.join(argv[1:])}. Flags start with --.")
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  for name, low in (("hidden_size", 1), ("seq_length", 1)):
    if f[name].value < low:
      raise errors.UserError(f"--{name} must be at least {low}; got {f[name].value}.")
  text = data.load_text(f.data_path, f.lowercase)
  vocab = data.Vocab.from_text(text)
  source = f.data_path or data.BUILTIN_CORPUS_NAME
  sys.stdout.write(  # keep
      f"Gradient check on {source}: {len(text):,} characters, K={vocab.size}, "
      f"m={f.hidden_size}, T={f.seq_length}, B={f.batch_size or 1}, sigma={f.sigma}, "
      f"seed={f.seed}, chunk {f.chunk_index}, "
      f"float64, finite-difference step {f.step}\n\n")
  rows = check_text(text, vocab, hidden_size=f.hidden_size, seq_length=f.seq_length, sigma=f.sigma,
                    dist=f.init_dist, seed=f.seed, chunk_index=f.chunk_index,
                    random_h0=f.random_h0, step=f.step, eps=f.eps, reduction=f.loss_reduction,
                    entries=f.entries or None, batch_size=f.batch_size)
  ok = all_pass(rows, f.tolerance)
  sys.stdout.write(format_table(rows, f.tolerance) + "\n\n")  # keep
  verdict = (f"PASS: all {3 * len(rows)} relative errors <= {f.tolerance:g}" if ok else
             f"FAIL: some relative errors exceed {f.tolerance:g}")
  sys.stdout.write(verdict + "\n")  # keep
  sys.exit(0 if ok else 1)


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("data_path", "", "UTF-8 text file; empty means the built-in corpus "
                      "(CPython's pydoc_data.topics, no download).")
  flags.DEFINE_bool("lowercase", False, "Lowercase the text first.")
  flags.DEFINE_integer("hidden_size", 100, "m, the number of hidden units.", lower_bound=1)
  flags.DEFINE_integer("seq_length", 25, "T, characters per chunk.", lower_bound=1)
  flags.DEFINE_float("sigma", 0.01, "Scale of the random initial weights.", lower_bound=0.0)
  flags.DEFINE_enum("init_dist", "normal", ["normal", "uniform"], "sigma*N(0,1) or sigma*U[0,1).")
  flags.DEFINE_integer("seed", 0, "PRNG seed for the initial weights.")
  flags.DEFINE_integer("chunk_index", 0, "Which chunk of the text to check on.", lower_bound=0)
  flags.DEFINE_bool("random_h0", False, "Start from a random hidden state instead of zeros.")
  flags.DEFINE_float("step", 1e-4, "Finite-difference step.", lower_bound=1e-12)
  flags.DEFINE_float("eps", 1e-6, "eps of the relative error's denominator.", lower_bound=0.0)
  flags.DEFINE_float("tolerance", 1e-6, "Largest relative error that passes.", lower_bound=0.0)
  flags.DEFINE_enum("loss_reduction", "sum", list(model.REDUCTIONS), "Sum or mean over characters.")
  flags.DEFINE_integer("batch_size", 0, "Check B streams at once (inputs [T, B]); 0: one "
                       "stream (inputs [T]).", lower_bound=0)
  flags.DEFINE_integer("entries", 0, "Finite differences on this many random entries per "
                       "parameter (0: all of them).", lower_bound=0)


if __name__ == "__main__":
  _define_flags()
  errors.run_cli(main)
