"""Text from a trained model.

  python -m jax_charrnn.sample --workdir=runs/goblet --which=best --length=1000 \\
      --temperature=0.8 --top_p=0.95 --prime="harry " --seed=1
  python -m jax_charrnn.sample --workdir=runs/goblet --num_samples=100 --length=500 \\
      --words=harry,hermione,ron,dumbledore
  python -m jax_charrnn.sample --workdir=runs/goblet --beam=8 --length=200 --prime="harry "

--which=best (the default) uses the copy of the best parameters with the
carry (hidden state) that went with them; --which=latest the parameters of
the last update. With --words, it draws --num_samples passages and counts in
how many each word appears (the original notebook's "words of interest").
With --beam=K, beam search finds the most probable continuation it can (K = 1 is
--temperature=0's greedy text) and prints its log-probability.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Sequence

from jax_charrnn import errors

if __name__ == "__main__":  # before JAX loads: Ctrl-C at any moment ends the command at once
  errors.stop_at_once_on_ctrl_c()

import jax  # pylint: disable=wrong-import-position
from absl import flags

from jax_charrnn import cli, config, generate
from jax_charrnn.config import setting

@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """What to draw, and how."""

  which: str = setting("best", "Sample from the best parameters or the latest ones.",
                       choices=("best", "latest"))
  length: int = setting(1000, "Characters to draw (long texts are written as they come).",
                        ge=1, le=10**12)
  temperature: float = setting(1.0, "Softmax temperature; 0 = always the most likely "
                               "character.", ge=0.0, le=1e6)
  top_p: float = setting(1.0, "Nucleus sampling: draw from the most likely characters holding "
                         "this much probability (1 = all).", ge=0.0, le=1.0)
  prime: str = setting("", "Text to feed in first; the sample continues it.")
  seed: int = setting(0, "PRNG seed.", ge=0, le=2**63 - 1)
  num_samples: int = setting(1, "How many passages to draw.", ge=1, le=100_000)
  case_sensitive: bool = setting(False, "--words: count only the exact case given.")
  beam: int = setting(0, "Beam search with this many beams instead of sampling: the most "
                      "probable continuation of --length characters it finds, and its "
                      "log-probability (1: greedy). 0: sample.", ge=0, le=1_000_000)


_OWN: dict = {}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  config.define_flags(SampleSettings, **kw)
  _OWN["workdir"] = flags.DEFINE_string("workdir", None, "Directory of a training run (holds "
                                        "checkpoints/).", **kw)
  _OWN["words"] = flags.DEFINE_list("words", [], "Count in how many passages each of these words "
                                    "appears (whole words, any case) and show where.", **kw)


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  o = config.from_flags(SampleSettings)
  if o.beam == 0 and flags.FLAGS["beam"].present:
    raise errors.UserError("--beam=0 asks for no beams: pass 1 or more (1: greedy), or leave "
                           "--beam out to sample.")
  run = cli.open_run(_OWN["workdir"].value, o.which)
  net, params, vocab, carry, x0 = run.net, run.params, run.vocab, run.carry, run.x0
  key = jax.random.key(o.seed)
  out = sys.stdout
  words = _OWN["words"].value
  prime = vocab.symbols_of(o.prime)  # the run's symbols: a byte run's prime is its UTF-8 bytes
  if o.beam:
    _beam(o, run, prime, words)
    return
  if words:
    passages = [vocab.show(p) for p in generate.generate(
        net, params, vocab, carry, x0, o.length, key, o.temperature, o.top_p, prime,
        o.num_samples)]
    counts = generate.count_words(passages, words, o.case_sensitive)
    out.write(f"{len(passages)} passages of {o.length} characters from "
              f"{run.describe()}; whole words, "
              f"{'exact case' if o.case_sensitive else 'any case'}:\n")
    for w, c in counts.items():
      n = len(passages)
      out.write(f"  {w!r}: in {c.passages} of {n} passages ({100 * c.passages / n:.0f}%), "
                f"{c.occurrences} times\n")
      for example in c.examples:
        out.write(f"      {example}\n")
    return
  if o.num_samples == 1:  # one text: written as it comes (Ctrl-C stops it between pieces)
    show = vocab.shower()
    for piece, in generate.generate_pieces(net, params, vocab, carry, x0, o.length, key,
                                           o.temperature, o.top_p, prime):
      out.write(show(piece))
      out.flush()
    out.write(show("", final=True) + "\n")
    return
  passages = generate.generate(net, params, vocab, carry, x0, o.length, key, o.temperature,
                               o.top_p, prime, o.num_samples)
  for i, p in enumerate(passages):
    out.write(f"--- sample {i + 1} ---\n{vocab.show(p)}\n")


BEAM_LENGTH = 100_000  # characters beam search may draw (it keeps K back-pointers for each)


def _beam(o: SampleSettings, run, prime: str, words: list) -> None:
  """--beam=K: the continuation and its log-probability, after the settings are checked."""
  vocab = run.vocab
  if o.beam > vocab.size:
    raise errors.UserError(f"--beam={o.beam} is more beams than the model has characters "
                           f"({vocab.size}): pass 1 to {vocab.size}.")
  if words or o.num_samples > 1:
    raise errors.UserError("--beam finds one continuation, the most probable it can: it does "
                           "not draw passages; leave out --words and --num_samples.")
  if o.length > BEAM_LENGTH:
    raise errors.UserError(f"--beam draws at most {BEAM_LENGTH:,} characters; got --length="
                           f"{o.length:,}.")
  text, log_p = generate.beam_search(run.net, run.params, vocab, run.carry, run.x0, o.length,
                                     o.beam, prime)
  sys.stdout.write(vocab.show(text) + "\n")
  sys.stdout.write(f"log-probability of the {o.length:,} characters after the prime, "
                   f"{o.beam} beam{'s' if o.beam > 1 else ''}: {log_p:.4f} nats "
                   f"({-log_p / math.log(2) / o.length:.4f} bits/char)\n")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
