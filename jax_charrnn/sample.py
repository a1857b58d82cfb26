"""Text from a trained model.

  python -m jax_charrnn.sample --workdir=runs/goblet --which=best --length=1000 \\
      --temperature=0.8 --top_p=0.95 --prime="harry " --seed=1
  python -m jax_charrnn.sample --workdir=runs/goblet --num_samples=100 --length=500 \\
      --words=harry,hermione,ron,dumbledore

--which=best (the default) uses the copy of the best parameters with the
carry (hidden state) that went with them; --which=latest the parameters of
the last update. With --words, it draws --num_samples passages and counts in
how many each word appears (the original notebook's "words of interest").
"""

from __future__ import annotations

import sys
from typing import Sequence

import jax
from absl import flags

from jax_charrnn import checkpoint, cli, config, generate

_OWN: dict = {}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  _OWN["workdir"] = flags.DEFINE_string("workdir", None, "Directory of a training run (holds "
                                        "checkpoints/).", **kw)
  _OWN["which"] = flags.DEFINE_enum("which", "best", ["best", "latest"], "Sample from the best "
                                    "parameters or the latest ones.", **kw)
  _OWN["length"] = flags.DEFINE_integer("length", 1000, "Characters to draw.", lower_bound=1,
                                        **kw)
  _OWN["temperature"] = flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 = always "
                                           "the most likely character.", lower_bound=0.0, **kw)
  _OWN["top_p"] = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: draw from the most likely "
                                     "characters holding this much probability (1 = all).",
                                     lower_bound=0.0, upper_bound=1.0, **kw)
  _OWN["prime"] = flags.DEFINE_string("prime", "", "Text to feed in first; the sample continues "
                                      "it.", **kw)
  _OWN["seed"] = flags.DEFINE_integer("seed", 0, "PRNG seed.", lower_bound=0,
                                      upper_bound=2**63 - 1, **kw)
  _OWN["num_samples"] = flags.DEFINE_integer("num_samples", 1, "How many passages to draw.",
                                             lower_bound=1, **kw)
  _OWN["words"] = flags.DEFINE_list("words", [], "Count in how many passages each of these words "
                                    "appears (whole words, any case) and show where.", **kw)
  _OWN["case_sensitive"] = flags.DEFINE_bool("case_sensitive", False, "--words: count only "
                                             "the exact case given.", **kw)


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
  workdir = cli.require_run(o["workdir"])
  _, meta = checkpoint.read_meta(workdir)
  cli.enable_x64_for(meta.get("config", {}).get("dtype", "float32"))
  net, params, vocab, carry, x0, meta = generate.load(workdir, o["which"])
  passages = generate.generate(net, params, vocab, carry, x0, o["length"],
                               jax.random.key(o["seed"]), o["temperature"], o["top_p"],
                               o["prime"], o["num_samples"])
  out = sys.stdout
  if o["words"]:
    counts = generate.count_words(passages, o["words"], o["case_sensitive"])
    out.write(f"{len(passages)} passages of {o['length']} characters from "
              f"{generate.which_params(o['which'], meta)}; whole words, "
              f"{'exact case' if o['case_sensitive'] else 'any case'}:\n")
    for w, c in counts.items():
      n = len(passages)
      out.write(f"  {w!r}: in {c.passages} of {n} passages ({100 * c.passages / n:.0f}%), "
                f"{c.occurrences} times\n")
      for example in c.examples:
        out.write(f"      {example}\n")
    return
  for i, p in enumerate(passages):
    if len(passages) > 1:
      out.write(f"--- sample {i + 1} ---\n")
    out.write(p + "\n")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
