"""How well a model predicts text it has not trained on, in bits per character.

  python -m jax_charrnn.evaluate --workdir=runs/goblet_val              # the run's held-out tail
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --which=latest --data_path=other.txt
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --json
  python -m jax_charrnn.evaluate --workdir=runs/enwik8 --split=test --streams=64   # long parts
  python -m jax_charrnn.evaluate --workdir=runs/shakespeare_best --dynamic --per_char=s.tsv

The score of a text x_1..x_N is the mean cross-entropy of its N - 1 next-character
predictions, the model reading the text once from a zero carry that it passes
from chunk to chunk (score.py):

  nats/char = -(1/P) sum_t log p(x_{t+1} | x_1..x_t)    bits/char = nats/char / ln 2
  perplexity = exp(nats/char)

P counts the predictions whose target is in the model's vocabulary: in another
text, a character outside it is counted and named, its prediction is skipped,
and read as an input it is a zero vector. The run's own reading of text (its
unit, lowercasing, line endings) applies to the file. The command scores in
float64. --split=test scores the run's test part (--test_fraction) instead of
its held-out tail; --streams=S scores S segments side by side (score.py: for
long texts; 1, the default, is the exact score). --dynamic adds the dynamic
evaluation's score beside the static one (dynamic.py: the model learns from each
segment after scoring it; --tune first chooses its settings on training text);
--per_char=FILE writes each prediction's surprisal.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Sequence

from jax_charrnn import errors

if __name__ == "__main__":  # before JAX loads: Ctrl-C at any moment ends the command at once
  errors.stop_at_once_on_ctrl_c()

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp
import numpy as np

from jax_charrnn import cli, dynamic, paths, saved, score  # pylint: disable=wrong-import-position
from jax_charrnn.console import Console  # pylint: disable=wrong-import-position


def define_flags(flag_values=None) -> dict:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import config  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  return {
      "workdir": flags.DEFINE_string("workdir", None, "Directory of a training run.", **kw),
      "which": flags.DEFINE_enum("which", "best", ["best", "latest"], "Score the best "
                                 "parameters or the latest ones.", **kw),
      "data_path": flags.DEFINE_string("data_path", "", "A UTF-8 text to score (any file for a "
                                       "byte-level run). Empty: the run's own held-out tail "
                                       "(--val_fraction), or its test part (--split=test).",
                                       **kw),
      "split": flags.DEFINE_enum("split", "val", ["val", "test"], "Without --data_path: score "
                                 "the run's held-out tail (val) or its test part (test, "
                                 "--test_fraction).", **kw),
      "streams": flags.DEFINE_integer("streams", 1, "Score the text as this many contiguous "
                                      "segments side by side (faster for long texts; each after "
                                      "the first reads 1,000 symbols of context first). 1: one "
                                      "stream, the exact score.", lower_bound=1,
                                      upper_bound=1 << 16, **kw),
      "json": flags.DEFINE_bool("json", False, "Print one JSON object (for scripts).", **kw),
      "per_char": flags.DEFINE_string("per_char", "", "Also write each prediction's surprisal "
                                      "to this file: a line per scored prediction, its position "
                                      "in the text and its bits (and with --dynamic, the "
                                      "dynamic bits).", **kw),
      "overwrite": flags.DEFINE_bool("overwrite", False, "Replace an existing --per_char "
                                     "file.", **kw),
      "dynamic": flags.DEFINE_bool("dynamic", False, "Also score the text by dynamic "
                                   "evaluation: the model learns from each segment after "
                                   "scoring it (dynamic.py; one stream). Reported beside the "
                                   "static score.", **kw),
      "dynamic_lr": flags.DEFINE_float("dynamic_lr", dynamic.DEFAULT_LR, "Dynamic evaluation's "
                                       "learning rate eta.", **kw),
      "dynamic_decay": flags.DEFINE_float("dynamic_decay", dynamic.DEFAULT_DECAY, "Dynamic "
                                          "evaluation's decay lambda towards the trained "
                                          "weights.", **kw),
      "dynamic_segment": flags.DEFINE_integer("dynamic_segment", dynamic.DEFAULT_SEGMENT,
                                              "Dynamic evaluation's segment length n: it "
                                              "learns after every n characters.", **kw),
      "tune": flags.DEFINE_bool("tune", False, "With --dynamic: first choose --dynamic_lr and "
                                "--dynamic_decay on a grid, on a slice of the run's training "
                                "text (--tune_slice), never on the text scored.", **kw),
      "tune_slice": flags.DEFINE_string("tune_slice", "", "START:END, the characters of the "
                                        "run's training part to tune on. Empty: its last "
                                        f"{TUNE_CHARS:,}.", **kw),
  }


_OWN: dict = {}
TUNE_CHARS = 20_000                     # --tune's slice of the training text, by default ...
TUNE_LRS = (3e-5, 5e-5, 1e-4)           # ... and its grid, with learning nothing (0, 0) beside
TUNE_DECAYS = (0.003, 0.01, 0.03)       # it (docs/results.md#dynamic-evaluation)
PROGRESS_SECONDS = 10


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
  settings = _check(o)
  jax.config.update("jax_enable_x64", True)  # the score is summed in float64
  run = cli.open_run(o["workdir"], o["which"])
  if o["data_path"]:
    ids, unknown, what = saved.text_ids(run, o["data_path"])
  else:
    (ids, what), unknown = saved.held_out(run, o["split"], warn=Console().warn), {}
  if len(ids) < 2:
    raise errors.UserError(f"{what} is too short to score: one prediction needs two "
                           "characters.")
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), run.params)
  s = score.score_ids(run.net, params, ids, unknown, streams=o["streams"],
                      per_char=bool(o["per_char"]))
  if s.predictions == 0:
    raise errors.UserError(
        f"Nothing to score in {what}: every character after the first is outside the model's "
        f"vocabulary ({', '.join(map(repr, sorted(unknown)))}), so no prediction can be scored.")
  dyn = _dynamic(run, params, ids, settings, o) if settings else None
  dyn_nats = dyn.pop("nats") if dyn else None
  if o["per_char"]:
    _write_per_char(o["per_char"], s.nats, dyn_nats)
  if o["json"]:
    sys.stdout.write(json.dumps(dict(s.to_dict(), text=what, which=run.which,
                                     updates=run.updates, checkpoint_step=run.step,
                                     workdir=run.workdir, streams=o["streams"],
                                     dynamic=dyn)) + "\n")
    return
  out = [f"Scored {what} with {run.describe()} of {run.workdir}:",
         f"  bits/char    {s.bits_per_char:.4f}",
         f"  nats/char    {s.nats_per_char:.4f}",
         f"  perplexity   {s.perplexity:.3f}",
         f"  predictions  {s.predictions:,}"]
  if o["streams"] > 1:
    out.append(f"  streams      {o['streams']} segments side by side (each after the first "
               f"with {score.WARMUP:,} symbols of context; --streams=1 is the exact score)")
  if s.skipped:
    out.append(f"  skipped      {s.skipped_note(run.vocab.show_each)}")
  if dyn:
    out.append(f"  dynamic      {dyn['bits_per_char']:.4f} bits/char, {dyn['nats_per_char']:.4f} "
               f"nats/char, learning while it reads ({_settings_words(dyn)})")
  if o["per_char"]:
    out.append(f"  per_char     {paths.shown(o['per_char'])}: a line per scored prediction "
               f"(position, bits{', dynamic bits' if dyn else ''})")
  sys.stdout.write("\n".join(out) + "\n")


def _check(o: dict) -> dynamic.Settings | None:
  """The options that go together, checked before any work; the dynamic settings (or None)."""
  if o["per_char"]:
    o["per_char"] = paths.output_file(o["per_char"], overwrite=o["overwrite"],
                                      flag="--per_char", example="surprisal.tsv")
  if not o["dynamic"]:
    if o["tune"] or o["tune_slice"]:
      raise errors.UserError("--tune and --tune_slice choose the dynamic evaluation's settings: "
                             "pass --dynamic too.")
    return None
  if o["streams"] > 1:
    raise errors.UserError("--dynamic reads the text as one stream (it learns in the text's "
                           "order): leave --streams at 1.")
  if o["tune_slice"] and not o["tune"]:
    raise errors.UserError("--tune_slice is where --tune chooses the settings: pass --tune too.")
  return dynamic.Settings(o["dynamic_lr"], o["dynamic_decay"], o["dynamic_segment"])


def _dynamic(run: saved.Saved, params, ids, settings: dynamic.Settings, o: dict) -> dict:
  """The dynamic score of `ids`, its settings (tuned on the training text first with --tune)
  and each prediction's nats, with progress on stderr."""
  start, console = time.perf_counter(), Console()
  corpus = saved.corpus(run, "gather the dynamic evaluation's gradient statistics",
                        warn=console.warn)
  train = corpus.tokens.symbols[:corpus.num_train]
  prior, stat_chars = dynamic.gradient_rms(run.net, params, train, settings.segment)
  _, method = dynamic.nats_and_grads_fn(run.net)
  tuned = None
  if o["tune"]:
    a, b = _slice(o["tune_slice"], corpus.num_train)
    console.say(f"Tuning the dynamic evaluation on training characters {a:,}-{b:,}:")
    settings, rows = dynamic.tune(run.net, prior, train[a:b], settings.segment, TUNE_LRS,
                                  TUNE_DECAYS, say=console.say)
    tuned = {"slice": [a, b], "grid": rows}
  nats = dynamic.score(run.net, prior, ids, settings,
                       progress=_progress(console, time.perf_counter()))
  nats_per_char = float(np.nanmean(nats))
  return dict(settings.to_dict(), bits_per_char=nats_per_char / math.log(2),
              nats_per_char=nats_per_char, perplexity=math.exp(nats_per_char),
              predictions=int(np.sum(~np.isnan(nats))), stat_chars=stat_chars, method=method,
              tuned=tuned, seconds=round(time.perf_counter() - start, 1), nats=nats)


def _slice(text: str, num_train: int) -> tuple[int, int]:
  """--tune_slice's START:END within the training part (default: its last TUNE_CHARS)."""
  if not text:
    return max(0, num_train - TUNE_CHARS), num_train
  try:
    a, b = (int(part.replace(",", "").replace("_", "")) for part in text.split(":"))
  except ValueError:
    a = b = -1
  if not 0 <= a < b <= num_train or b - a < 2:
    raise errors.UserError(f"--tune_slice={text!r} is not START:END with 0 <= START < END <= "
                           f"{num_train:,} (the run's training characters), e.g. "
                           f"--tune_slice={max(0, num_train - TUNE_CHARS)}:{num_train}.")
  return a, b


def _progress(console: Console, start: float):
  """A progress line on stderr every PROGRESS_SECONDS or so (the dynamic score takes minutes)."""
  last = [start]

  def progress(done: int, total: int) -> None:
    now = time.perf_counter()
    if now - last[0] >= PROGRESS_SECONDS and done < total:
      last[0] = now
      sys.stderr.write(f"dynamic evaluation: {done:,} of {total:,} predictions "
                       f"({100 * done / total:.0f}%) in {now - start:.0f} s\n")
      sys.stderr.flush()
  return progress


def _settings_words(d: dict) -> str:
  tuned = (f", tuned on training characters {d['tuned']['slice'][0]:,}-"
           f"{d['tuned']['slice'][1]:,}" if d["tuned"] else "")
  return (f"segments of {d['segment']}, learning rate {d['learning_rate']:g}, decay "
          f"{d['decay']:g}{tuned}; gradient statistics from {d['stat_chars']:,} training "
          f"characters; {d['method']}; {d['seconds']:.0f} s")


def _write_per_char(path: str, static: np.ndarray, dyn: np.ndarray | None) -> None:
  """A line per scored prediction: its position (the index of the predicted character in the
  text), its surprisal in bits (and the dynamic one), tab-separated, after a # header."""
  scored = np.flatnonzero(~np.isnan(static))
  cols = [scored + 1, static[scored] / math.log(2)]
  head = "# position\tbits"
  if dyn is not None:
    cols.append(dyn[scored] / math.log(2))
    head += "\tdynamic_bits"
  table = np.column_stack(cols)

  def write(f):
    f.write((head + "\n").encode())
    np.savetxt(f, table, fmt=["%d"] + ["%.17g"] * (len(cols) - 1), delimiter="\t")
  paths.write_out(path, write, flag="--per_char")


if __name__ == "__main__":
  _OWN.update(define_flags())
  cli.run(main)
