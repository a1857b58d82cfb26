"""How well a model predicts text it has not trained on, in bits per character.

  python -m jax_charrnn.evaluate --workdir=runs/goblet_val              # the run's held-out tail
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --which=latest --data_path=other.txt
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --json
  python -m jax_charrnn.evaluate --workdir=runs/enwik8 --split=test --streams=64   # long parts

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
long texts; 1, the default, is the exact score).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from jax_charrnn import errors

if __name__ == "__main__":  # before JAX loads: Ctrl-C at any moment ends the command at once
  errors.stop_at_once_on_ctrl_c()

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp

from jax_charrnn import cli, saved, score  # pylint: disable=wrong-import-position
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
  }


_OWN: dict = {}


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
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
  s = score.score_ids(run.net, params, ids, unknown, streams=o["streams"])
  if s.predictions == 0:
    raise errors.UserError(
        f"Nothing to score in {what}: every character after the first is outside the model's "
        f"vocabulary ({', '.join(map(repr, sorted(unknown)))}), so no prediction can be scored.")
  if o["json"]:
    sys.stdout.write(json.dumps(dict(s.to_dict(), text=what, which=run.which,
                                     updates=run.updates, checkpoint_step=run.step,
                                     workdir=run.workdir, streams=o["streams"])) + "\n")
    return
  out = [f"Scored {what} with {run.describe()} of {run.workdir}:",
         f"  bits/char    {s.bits_per_char:.4f}",
         f"  nats/char    {s.nats_per_char:.4f}",
         f"  perplexity   {s.perplexity:.3f}",
         f"  predictions  {s.predictions:,}"]
  if o["streams"] > 1:
    out.append(f"  streams      {o['streams']} segments side by side (each after the first "
               f"with {score.WARMUP:,} symbols of context; --streams=1 is the exact score)")
  if s.unknown:
    names = ", ".join(f"{run.vocab.show_each(ch)[0]!r} ({n})"
                      for ch, n in sorted(s.unknown.items(), key=lambda kv: -kv[1]))
    out.append(f"  skipped      {s.skipped:,} predictions of characters the model does not know: "
               f"{names}")
  sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
  _OWN.update(define_flags())
  cli.run(main)
