"""Three-way gradient check: hand-derived BPTT, `jax.grad`, finite differences.

  python -m jax_charrnn.gradcheck [--data_path=book.txt] [--hidden_size=100] [--num_layers=2]

prints, for every parameter of every layer (U, W, b, V, c for the course's
model), the course's relative error ||a - b|| / max(eps, ||a|| + ||b||)
between each pair of gradients, the finite differences' own error, and a
pass/fail mark, and exits with status 1 if any fails.

The finite differences say how wrong they may be. Everything runs in float64
(float32 differences are useless: relative errors up to 1). The centred
differences D(h) give the Richardson extrapolations R(h) = (4 D(h/2) - D(h)) / 3,
whose truncation error is O(h^4). Too large a step leaves truncation error,
too small one rounding error: tiny gradients (an LSTM's recurrent weights at
sigma = 0.01) need a larger h than 1e-4, whose rounding swamps them. Per
parameter a pilot on a few entries narrows the steps to five, every checked
entry is tried at those, and the step h where R(h) and R(h/2) agree best over
all of them is kept. The numerical gradient is R(h/2); its error estimate E is
|R(h) - R(h/2)| (about 15 times R(h/2)'s truncation error, and their
rounding) plus a floor for rounding. A comparison with it passes when its
relative error is <= tolerance + 2 x the "FD error" ||E|| / (||jax.grad|| +
||numerical||); hand BPTT and jax.grad must agree within the tolerance itself.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_charrnn import bptt, data, errors, loop, memory, model, tokens, walk
from jax_charrnn.config import TrainConfig, setting
from jax_charrnn.console import Console, Interrupts
from jax_charrnn.model import Model, Params

STEPS = 0.2 * 0.5 ** np.arange(16)  # the pilot's candidate steps h: 0.2 down to 6e-6
PILOT_ENTRIES = (4, 4)   # the pilot tries them on each parameter's 4 largest entries and 4 others
WINDOW = 5               # then every checked entry is tried at 5 steps from one above its choice
# The loss's rounding, relative: one unit in its last place. A difference of two nearly equal
# losses, computed the same way, rounds far less (measured: about a tenth of it).
ROUNDING = float(np.finfo(np.float64).eps)
# A check still running after this many seconds says which parameter it is on (a 2 x 512 LSTM's
# takes minutes; a small network's is done before anyone would wonder).
PROGRESS_AFTER_S = 5.0

# progress(name, k, count): called before parameter k (of count) gets its finite differences.
Progress = Callable[[str, int, int], None]


def progress_lines(say: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                   after_s: float | None = None) -> Progress:
  """A `Progress` that says "Gradient check: <name> (k of count), <s> s so far..." for each
  parameter reached once the check has run `after_s` seconds (PROGRESS_AFTER_S by default)."""
  start = clock()
  wait = PROGRESS_AFTER_S if after_s is None else after_s

  def progress(name: str, k: int, count: int) -> None:
    elapsed = clock() - start
    if elapsed >= wait:
      say(f"Gradient check: {name} ({k + 1} of {count}), {elapsed:.0f} s so far...")

  return progress


def relative_error(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> float:
  """The course's ||a - b|| / max(eps, ||a|| + ||b||), Frobenius norms."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(eps, np.linalg.norm(a) + np.linalg.norm(b)))


class PerturbedLosses:
  """The loss with one entry of one parameter set to a value, for many (entry, value) pairs.

  One compiled program per parameter evaluates `lanes` pairs at once (vmap
  over that parameter alone, the others shared, so that the layers it does
  not touch run as one matrix product for all lanes); a Python loop feeds it,
  so that the memory held is `lanes` perturbed copies whatever the number of
  pairs, and `stop()` (a Ctrl-C) is read between calls: it raises
  KeyboardInterrupt.
  """

  def __init__(self, net: Model, params: Params, carry0: Any, inputs: jax.Array,
               targets: jax.Array, reduction: str = "sum", masks=None, lanes: int = 32,
               stop: Callable[[], bool] | None = None):
    leaves, tree = jax.tree.flatten(params)  # the order of model.named_leaves

    def one(leaves, k, i, x):
      leaf = leaves[k].ravel().at[i].set(x).reshape(leaves[k].shape)
      perturbed = jax.tree.unflatten(tree, leaves[:k] + [leaf] + leaves[k + 1:])
      return net.loss(perturbed, carry0, inputs, targets, reduction, masks)[0]

    self._losses = jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0)), static_argnums=1)
    self.leaves, self.lanes, self.stop = leaves, lanes, stop
    self.values = [np.asarray(leaf).ravel() for leaf in leaves]

  def __call__(self, k: int, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The losses with entry ids[j] of parameter k (flat) set to values[j]: [len(ids)]."""
    n, pad = len(ids), -len(ids) % self.lanes
    ids = np.concatenate([ids, np.zeros(pad, np.int64)]).astype(np.int64)
    values = np.concatenate([values, np.full(pad, self.values[k][0])])
    out = []
    for s in range(0, len(ids), self.lanes):
      if self.stop is not None and self.stop():
        raise KeyboardInterrupt
      out.append(np.asarray(self._losses(self.leaves, k, ids[s:s + self.lanes],
                                         values[s:s + self.lanes])))
    return np.concatenate(out)[:n]

  def differences(self, k: int, ids: np.ndarray, h: np.ndarray | float) -> np.ndarray:
    """Centred differences (L(θ_i + h) - L(θ_i - h)) / (the step actually taken)."""
    theta = self.values[k][ids]
    up, down = theta + h, theta - h
    losses = self(k, np.concatenate([ids, ids]), np.concatenate([up, down]))
    return (losses[:len(ids)] - losses[len(ids):]) / (up - down)


def pilot_step(losses: PerturbedLosses, k: int, ids: np.ndarray) -> int:
  """The index in STEPS of the step h at which R(h) and R(h/2) agree best on entries `ids`.

  Too large a step leaves truncation error, too small one rounding error; the
  pair that agrees best is where both are smallest.
  """
  d = losses.differences(k, np.tile(ids, len(STEPS)), np.repeat(STEPS, len(ids)))
  d = d.reshape(len(STEPS), len(ids))
  r = (4 * d[1:] - d[:-1]) / 3  # R(h) for every h but the smallest
  spread = np.linalg.norm(r[:-1] - r[1:], axis=1)
  return int(np.argmin(np.where(np.isnan(spread), np.inf, spread)))


def extrapolated(losses: PerturbedLosses, k: int, ids: np.ndarray, steps: np.ndarray,
                 loss0: float) -> tuple[np.ndarray, np.ndarray, float]:
  """(R(h/2), E, h) at entries `ids` of parameter k: the numerical gradient and its error.

  steps: h_0 > h_1 = h_0/2 > ...; R(h_j) = (4 D(h_{j+1}) - D(h_j)) / 3 for
  each but the last, and h is the h_j at which the whole of `ids` agrees best
  with h_{j+1}. E = |R(h) - R(h/2)| + δ/h: the difference holds R(h)'s
  truncation error (about 15 times R(h/2)'s) and the two's rounding, at
  random; δ/h, with δ = ROUNDING |L|, is a floor for the rounding where the
  difference happens to be small.
  """
  n = len(ids)
  d = losses.differences(k, np.tile(ids, len(steps)), np.repeat(steps, n))
  d = d.reshape(len(steps), n)
  r = (4 * d[1:] - d[:-1]) / 3
  spread = np.linalg.norm(r[:-1] - r[1:], axis=1)
  j = int(np.argmin(np.where(np.isnan(spread), np.inf, spread)))
  return r[j + 1], np.abs(r[j] - r[j + 1]) + ROUNDING * abs(loss0) / steps[j], float(steps[j])


def sample_entries(params: Params, entries: int | None, seed: int,
                   focus: dict[str, int]) -> list[np.ndarray]:
  """Per parameter, the sorted flat indices (within it) that the finite differences check.

  All of them when `entries` is None or covers them; else `entries` drawn at
  random with `seed`, always including focus[name] (its largest gradient).
  """
  rng = np.random.default_rng(seed)
  chosen = []
  for name, leaf in model.named_leaves(params):
    n = int(leaf.size)
    if entries is None or entries >= n:
      chosen.append(np.arange(n))
      continue
    others = np.delete(np.arange(n), focus[name])
    picked = rng.choice(others, size=entries - 1, replace=False)
    chosen.append(np.sort(np.append(picked, focus[name])))
  return chosen


def numerical_grads(losses: PerturbedLosses, chosen: Sequence[np.ndarray], loss0: float,
                    sizes: Sequence[np.ndarray], step: float | None = None,
                    seed: int = 0, progress: Callable[[int, int], None] | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray, float]]:
  """Per parameter, (R, E, h) at its `chosen` entries (`extrapolated`).

  Treats the network as a black box: each entry is perturbed on its own. A
  pilot (`pilot_step`) on a few entries, the largest by sizes[k] (e.g.
  |jax.grad|) and others at random (seed), PILOT_ENTRIES of each, narrows the
  steps to WINDOW of STEPS around its choice; every chosen entry is then
  evaluated at those, and `extrapolated` picks the step on all of them (a few
  entries of large curvature, which a pilot misses, can need a smaller one).
  step: h for every parameter instead (with h/2 and h/4). progress(k, count): told before
  parameter k.
  """
  rng = np.random.default_rng(seed)
  out = []
  for k, (ids, size) in enumerate(zip(chosen, sizes)):
    if progress is not None:
      progress(k, len(chosen))
    if step is not None:
      steps = step * 0.5 ** np.arange(3)
    else:
      order = np.argsort(-np.abs(size[ids]), kind="stable")
      top, rest = ids[order[:PILOT_ENTRIES[0]]], ids[order[PILOT_ENTRIES[0]:]]
      others = rng.choice(rest, size=min(PILOT_ENTRIES[1], len(rest)), replace=False)
      best = pilot_step(losses, k, np.concatenate([top, others]))
      start = min(max(best - 1, 0), len(STEPS) - WINDOW)
      steps = STEPS[start:start + WINDOW]
    out.append(extrapolated(losses, k, ids, steps, loss0))
  return out


@dataclasses.dataclass(frozen=True)
class Row:
  """One parameter's line of the gradient-check table (manual_vs_*: None without a hand BPTT).

  fd_error: the finite differences' relative error bound ||E|| / (||jax.grad||
  + ||numerical||); step: the h they used (None: not recorded).
  """

  name: str
  shape: tuple[int, ...]
  manual_vs_autodiff: float | None
  manual_vs_numerical: float | None
  autodiff_vs_numerical: float
  checked_entries: int
  fd_error: float = 0.0
  step: float | None = None

  def errors(self) -> list[float]:
    return [x for x in (self.manual_vs_autodiff, self.manual_vs_numerical,
                        self.autodiff_vs_numerical) if x is not None]

  def limits(self, tolerance: float) -> list[float]:
    """What each of `errors()` must not exceed: the tolerance, + 2 x fd_error for numerical."""
    slack = tolerance + 2 * self.fd_error
    return [lim for x, lim in ((self.manual_vs_autodiff, tolerance),
                               (self.manual_vs_numerical, slack),
                               (self.autodiff_vs_numerical, slack)) if x is not None]


class Chunk(NamedTuple):
  """What `net.loss` reads besides the parameters: the carry before the chunk, the chunk's
  inputs and targets, the loss's reduction, and the dropout masks held fixed for all three
  gradients (`net.dropout_masks`; None without regularisation)."""

  carry0: Any
  inputs: jax.Array
  targets: jax.Array
  reduction: str = "sum"
  masks: Any = None


@dataclasses.dataclass(frozen=True)
class Options:
  """How the finite differences are taken.

  step: a fixed step h for every parameter (None: a pilot picks one per parameter).
  eps: the relative error's floor in its denominator.
  entries: entries checked per parameter, its largest gradient among them (None: all).
  seed: draws the entries and the pilot's.
  lanes: perturbed losses per compiled call (memory.gradcheck_lanes bounds it).
  """

  step: float | None = None
  eps: float = 1e-6
  entries: int | None = None
  seed: int = 0
  lanes: int = 32


# A gradient function the check compares: `(net, params, chunk) -> grads` (a Params).
Gradients = Callable[[Model, Params, Chunk], Params]


def hand_bptt(net: Model, params: Params, chunk: Chunk) -> Params:
  """The hand-derived gradients (bptt.loss_and_grads), what `check` compares by default."""
  return jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(
      net, params, chunk.carry0, chunk.inputs, chunk.targets, chunk.reduction, chunk.masks)[1]


def check(net: Model, params: Params, chunk: Chunk, *, options: Options = Options(),
          hand: Gradients | None = hand_bptt, stop: Callable[[], bool] | None = None,
          progress: Progress | None = None) -> list[Row]:
  """Compares the three gradients of `net.loss` at one chunk; one Row per parameter.

  Call it with float64 arrays under `jax.enable_x64(True)`. Where `options.entries`
  limits the finite differences, all three comparisons use only the checked
  entries (the manual/autodiff one too, so that the columns are comparable).

  Args:
    net, params: the network and the parameters to check at.
    chunk: what the loss reads besides them.
    options: the finite differences' step, entries and seed (`Options`).
    hand: the gradients to prove (default: the cell's hand BPTT); None, or a cell
      without a hand BPTT: the jax.grad/numerical comparison only.
    stop: read between compiled calls (Ctrl-C); once true, KeyboardInterrupt.
    progress: told before each parameter's finite differences (`progress_lines`).
  """
  as_numpy = lambda grads: {n: np.asarray(g) for n, g in model.named_leaves(grads)}
  manual = None
  if hand is not None and net.cell.backward is not None:
    manual = as_numpy(hand(net, params, chunk))
  (loss0, _), auto = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(
      params, chunk.carry0, chunk.inputs, chunk.targets, chunk.reduction, chunk.masks)
  auto = as_numpy(auto)
  focus = {n: int(np.argmax(np.abs((auto if manual is None else manual)[n]))) for n in auto}
  chosen = sample_entries(params, options.entries, options.seed, focus)
  losses = PerturbedLosses(net, params, *chunk, lanes=options.lanes, stop=stop)
  names = list(auto)
  numerical = numerical_grads(losses, chosen, float(loss0), [a.ravel() for a in auto.values()],
                              options.step, options.seed,
                              progress and (lambda k, n: progress(names[k], k, n)))
  return [_row(name, leaf.shape, auto[name].ravel()[idx],
               None if manual is None else manual[name].ravel()[idx], n, e, h, options.eps)
          for (name, leaf), idx, (n, e, h) in zip(model.named_leaves(params), chosen, numerical)]


def _row(name: str, shape: tuple, auto: np.ndarray, manual: np.ndarray | None,
         numerical: np.ndarray, error: np.ndarray, step: float, eps: float) -> Row:
  """One parameter's Row from its checked entries' three gradients and the FD error E."""
  scale = max(eps, np.linalg.norm(auto) + np.linalg.norm(numerical))
  return Row(name, tuple(shape),
             None if manual is None else relative_error(manual, auto, eps),
             None if manual is None else relative_error(manual, numerical, eps),
             relative_error(auto, numerical, eps), len(auto),
             float(np.linalg.norm(error) / scale), step)


def format_table(rows: Sequence[Row], tolerance: float, markdown: bool = False) -> str:
  """The check as a text (or Markdown) table with a pass/fail mark per error."""

  def cell(x, limit):
    return "n/a (no hand BPTT)" if x is None else f"{x:.2e} {'ok' if x <= limit else 'FAIL'}"

  header = ["param", "shape", "entries", "step", "manual vs jax.grad", "manual vs numerical",
            "jax.grad vs numerical", "FD error"]
  lines = []
  for r in rows:
    slack = tolerance + 2 * r.fd_error
    lines.append([r.name, "x".join(map(str, r.shape)), str(r.checked_entries),
                  "" if r.step is None else f"{r.step:.1e}",
                  cell(r.manual_vs_autodiff, tolerance), cell(r.manual_vs_numerical, slack),
                  cell(r.autodiff_vs_numerical, slack), f"{r.fd_error:.1e}"])
  if markdown:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)
  widths = [max(len(x) for x in col) for col in zip(header, *lines)]
  fmt = "  ".join("{:<%d}" % w for w in widths)
  return "\n".join([fmt.format(*header).rstrip()] + [fmt.format(*line).rstrip() for line in lines])


def all_pass(rows: Sequence[Row], tolerance: float) -> bool:
  """True when every error is within its limit (`Row.limits`; a NaN error fails)."""
  return all(x <= lim for r in rows for x, lim in zip(r.errors(), r.limits(tolerance)))


def check_text(text: str, vocab: data.Vocab, config: TrainConfig, **kw) -> list[Row]:
  """`check_corpus` on a text held in memory (its symbols, in the vocabulary's unit)."""
  toks = tokens.Tokens(tokens.Symbols(vocab.encode(text)), vocab, "", "text")
  return check_corpus(walk.Corpus(toks, config.seq_length, config.batch_size, len(text)),
                      config, **kw)


def check_corpus(corpus: walk.Corpus, config: TrainConfig, *, chunk_index: int = 0,
                 random_carry: bool = False, options: Options = Options(),
                 hand: Gradients | None = hand_bptt, stop: Callable[[], bool] | None = None,
                 progress: Progress | None = None) -> list[Row]:
  """The check at freshly initialised float64 parameters on one chunk of a text: the chunk
  update `chunk_index` of its walk reads (walk.Corpus.windows: [T, B] in B streams).

  `config` gives the network (cell, layers, hidden size, initialisation,
  seed), the chunk (seq_length, batch_size) and the loss reduction; its dtype
  and compute_dtype are ignored (float64 here: a bfloat16 run's network is checked in full
  precision; tests/mixed_precision_test.py checks its mixed-precision gradients). options' step, eps and entries are used; its seed
  is the config's and its lanes as many as `memory.gradcheck_lanes` allows.
  hand, stop and progress are `check`'s.
  """
  corpus = corpus.walked(config.seq_length, config.batch_size)
  window = corpus.windows(min(chunk_index, corpus.steps_per_epoch - 1), 1)[0]  # [T + 1, B]
  vocab = corpus.vocab
  net = loop.build_model(config, vocab.size).full_precision()
  options = dataclasses.replace(options, seed=config.seed,
                                lanes=memory.gradcheck_lanes(config, vocab.size))
  with jax.enable_x64(True):
    key = jax.random.key(config.seed)
    params = net.init(key, loop.init_spec(config), jnp.float64)
    carry0 = net.zero_carry((config.batch_size,), jnp.float64)
    if random_carry:
      leaves, tree = jax.tree.flatten(carry0)
      keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
      carry0 = jax.tree.unflatten(tree, [0.5 * jnp.tanh(jax.random.normal(k, x.shape, x.dtype))
                                         for k, x in zip(keys, leaves)])
    x = jnp.asarray(window[:-1])
    masks = net.dropout_masks(jax.random.fold_in(key, 2), x.shape, jnp.float64)
    chunk = Chunk(carry0, x, jnp.asarray(window[1:]), config.loss_reduction, masks)
    return check(net, params, chunk, options=options, hand=hand, stop=stop, progress=progress)


# ---- the command line ----

# The settings of the network and the chunk are the trainer's (declared once, in config.py).
SHARED = ("data_path", "unit", "lowercase", "raw_newlines", "cache_dir", "seq_length",
          "batch_size", "cell",
          "num_layers", "hidden_size", "dropout", "dropout_mode", "input_dropout", "weight_drop",
          "init_sigma", "init_dist", "forget_bias", "seed",
          "loss_reduction")


# --wrong: a hand gradient broken on purpose, for a person to see the check fail (the command
# line's; the library's `check` takes any gradient function as `hand`).
_WRONG = ("none", "entry", "sign", "scale", "transpose")


def _broken(how: str) -> Gradients:
  """The hand BPTT, broken as --wrong says: entry (every parameter's largest entry off by a
  relative 1e-3), sign (that entry's sign flipped), scale (x 1.01), transpose (every square
  gradient transposed); none: as it is."""

  def wrong(g):
    g = np.array(g)
    i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    if how == "entry":
      g[i] *= 1 + 1e-3
    elif how == "sign":
      g[i] = -g[i]
    elif how == "scale":
      g = g * 1.01
    elif how == "transpose" and g.ndim == 2 and g.shape[0] == g.shape[1]:
      g = g.T.copy()
    return g

  return lambda net, params, chunk: jax.tree.map(wrong, hand_bptt(net, params, chunk))


@dataclasses.dataclass(frozen=True)
class CheckSettings:
  """The check's own settings."""

  chunk_index: int = setting(0, "Which chunk of the text to check on.", ge=0)
  random_carry: bool = setting(False, "Start from a random carry (hidden state) instead of "
                               "zeros.")
  step: float = setting(0.0, "Finite-difference step h for every parameter (0: a pilot picks "
                        "one per parameter).", ge=0.0, le=1.0)
  eps: float = setting(1e-6, "eps of the relative error's denominator.", ge=0.0, le=1.0)
  tolerance: float = setting(1e-6, "Largest relative error that passes (plus twice the finite "
                             "differences' own error, for the numerical columns).",
                             ge=0.0, le=1.0)
  entries: int = setting(300, "Finite differences on this many random entries per parameter, "
                         "its largest gradient included (0: all of them).", ge=0)
  wrong: str = setting("none", "Break the hand-derived gradient on purpose, to see the check "
                       "fail: entry (each parameter's largest entry off by a relative 1e-3), "
                       "sign (its sign flipped), scale (x 1.01), transpose (square ones).",
                       choices=_WRONG)


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
  console = Console()
  corpus = walk.corpus_of(config, console.say, console.warn)
  vocab, source = corpus.vocab, corpus.source
  net = loop.build_model(config, vocab.size)
  if net.cell.backward is None:
    raise errors.UserError(f"The {config.cell!r} cell has no hand-derived BPTT: there is nothing "
                           "to check three ways.")
  memory.check(memory.gradcheck_bytes(config, vocab.size,
                                      memory.gradcheck_lanes(config, vocab.size)),
               "This gradient check")
  sample = f"{own.entries} random entries per parameter" if own.entries else "every entry"
  # Ctrl-C is a flag from here on, read between the compiled calls.
  with Interrupts(console, "stopping after the current call.", "already stopping.") as caught:
    unit = "bytes" if config.unit == "byte" else "characters"
    console.say(f"Gradient check on {source}: {corpus.num_symbols:,} {unit}, K={vocab.size}, "
                f"{net.describe()}, T={config.seq_length}, B={config.batch_size}, "
                f"sigma={config.init_sigma} ({config.init_dist}), seed={config.seed}, chunk "
                f"{own.chunk_index}, float64; finite differences on {sample}, Richardson-"
                f"extrapolated, step {own.step or 'chosen per parameter'}"
                + ("" if own.wrong == "none" else
                   f"; hand gradient broken on purpose ({own.wrong})") + "\n")
    rows = check_corpus(corpus, config, chunk_index=own.chunk_index,
                      random_carry=own.random_carry,
                      options=Options(own.step or None, own.eps, own.entries or None),
                      hand=_broken(own.wrong), stop=lambda: caught.signal is not None,
                      progress=progress_lines(console.say))
    if caught.signal is not None:  # after the last call: stop all the same
      raise KeyboardInterrupt
  ok = all_pass(rows, own.tolerance)
  console.say(format_table(rows, own.tolerance) + "\n")
  count = sum(len(r.errors()) for r in rows)
  console.say(f"PASS: all {count} relative errors <= {own.tolerance:g} (+ 2 x FD error for the "
              "numerical ones)" if ok else
              f"FAIL: some relative errors exceed {own.tolerance:g} (+ 2 x FD error for the "
              "numerical ones)")
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  define_flags()
  cli.run(main)
