"""Text from a trained model: `python -m jax_charrnn.sample --workdir=RUN`.

  python -m jax_charrnn.sample --workdir=runs/goblet --which=best --length=1000 \\
      --temperature=0.8 --top_p=0.95 --prime="harry " --seed=1
  python -m jax_charrnn.sample --workdir=runs/goblet --num_samples=100 --length=500 \\
      --words=harry,hermione,ron,dumbledore

`--which=best` (default) uses the copy of the best parameters with the hidden
state that went with them; `--which=latest` the parameters of the last update.
With `--words`, it draws --num_samples passages and counts in how many each
word appears (the original notebook's "words of interest" study).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import jax
from absl import flags

from jax_charrnn import checkpoint, errors, generate


_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a training run (holds checkpoints/).")
_WHICH = flags.DEFINE_enum("which", "best", ["best", "latest"],
                           "Sample from the best parameters or the latest ones.")
_LENGTH = flags.DEFINE_integer("length", 1000, "Characters to draw.", lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 = always the most "
                                  "likely character.", lower_bound=0.0)
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: draw from the most likely characters "
                            "holding this much probability (1 = all).", lower_bound=0.0,
                            upper_bound=1.0)
_PRIME = flags.DEFINE_string("prime", "", "Text to feed in first; the sample continues it.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "How many passages to draw.", lower_bound=1)
_WORDS = flags.DEFINE_list("words", [], "Count in how many passages each of these words appears.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {' '.join(argv[1:])}. Flags start with --.")
  if not _WORKDIR.value:
    raise errors.UserError("Pass --workdir=RUN, the directory a training run wrote.")
  if not checkpoint.has_checkpoint(_WORKDIR.value):
    runs = sorted(n for n in (os.listdir(_WORKDIR.value) if os.path.isdir(_WORKDIR.value) else [])
                  if checkpoint.has_checkpoint(os.path.join(_WORKDIR.value, n)))
    if runs:  # e.g. the root of a sweep
      raise errors.UserError(
          f"{_WORKDIR.value!r} holds several runs, not one: pass one of them, e.g. "
          f"--workdir={os.path.join(_WORKDIR.value, runs[0])} (runs: {', '.join(runs)}).")
    raise errors.UserError(f"No checkpoint in {_WORKDIR.value!r}: train first, e.g. "
                           f"`python -m jax_charrnn.train --workdir={_WORKDIR.value}`.")
  params, vocab, h, x0, meta = generate.load(_WORKDIR.value, _WHICH.value)
  passages = generate.generate(params, vocab, h, x0, _LENGTH.value, jax.random.key(_SEED.value),
                      _TEMPERATURE.value, _TOP_P.value, _PRIME.value, _NUM_SAMPLES.value)
  out = sys.stdout
  if _WORDS.value:
    counts = generate.count_words(passages, _WORDS.value)
    out.write(f"{len(passages)} passages of {_LENGTH.value} characters from the {_WHICH.value} "  # keep
              f"parameters (step {meta.get('step')}):\n")
    for w, n in counts.items():
      out.write(f"  {w!r}: in {n} of {len(passages)} ({100 * n / len(passages):.0f}%)\n")  # keep
    return
  for i, p in enumerate(passages):
    if len(passages) > 1:
      out.write(f"--- sample {i + 1} ---\n")  # keep
    out.write(p + "\n")  # keep


if __name__ == "__main__":
  errors.run_cli(main)
