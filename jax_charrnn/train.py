"""Train a character-level recurrent network on a text.

  python -m jax_charrnn.train --flagfile=experiments/quickstart.flags     # built-in corpus
  python -m jax_charrnn.train --flagfile=experiments/goblet.flags         # the course's run
  python -m jax_charrnn.train --flagfile=experiments/goblet.flags --lowercase --workdir=runs/gl

A flag file holds one --flag=value per line (# starts a comment); flags are
read in order and later ones win, so a flag after --flagfile overrides the
file. Progress goes to the terminal; everything the run leaves (report.md,
loss.png, samples.txt, best_passage.txt, metrics.jsonl, train.log,
checkpoints/) goes to --workdir. Running the same command again resumes the
run there; Ctrl-C saves the state first. Sample from it with
`python -m jax_charrnn.sample --workdir=DIR`.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from jax_charrnn import cli, config, trainer

_OWN: dict = {}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Every training setting (config.TrainConfig), the runtime's, and the workdir's flags."""
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  config.define_flags(config.TrainConfig, **kw)
  config.define_flags(cli.Runtime, **kw)
  _OWN["workdir"] = flags.DEFINE_string("workdir", "runs/default", "Where checkpoints and "
                                        "reports go.", **kw)
  _OWN["resume"] = flags.DEFINE_bool("resume", True, "Continue the run in --workdir if it holds "
                                     "one.", **kw)
  _OWN["overwrite"] = flags.DEFINE_bool("overwrite", False, "Delete the run in --workdir first.",
                                        **kw)


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  train_config = config.from_flags(config.TrainConfig)
  runtime = config.from_flags(cli.Runtime)
  workdir = cli.workdir(_OWN["workdir"].value)
  cli.enable_x64_for(train_config.dtype)
  cli.start_runtime(runtime)
  cli.log_to_file(workdir, "train")
  result = trainer.train(train_config, workdir, resume=_OWN["resume"].value,
                         overwrite=_OWN["overwrite"].value)
  if result.record.interrupted:
    raise SystemExit(130)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
