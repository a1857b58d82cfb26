"""Many runs in one program: every (learning rate, seed) pair trained at once.

  python -m jax_charrnn.sweep --flagfile=experiments/sweep_lr_seed.flags
  python -m jax_charrnn.sweep --flagfile=experiments/quickstart.flags \\
      --learning_rates=0.05,0.1,0.2 --seeds=0,1,2 --workdir=runs/sweep

Takes every training flag (see `python -m jax_charrnn.train --help`) plus
--learning_rates and --seeds. All runs share the text and every other setting,
and train inside one jitted program (`jax.vmap` over the runs; with several
devices, e.g. --cpu_devices=2, the runs are split over them). Each run gets
its own directory under --workdir with the files a training run leaves
(report.md, loss.png, samples.txt, metrics.jsonl, checkpoints/), which
`sample --workdir=<workdir>/<run>` reads; the sweep adds summary.md,
summary.json and sweep_loss.png. A run whose loss diverges is reported and the
others go on. Ctrl-C saves every run; the same command resumes the sweep.

Settings that change array shapes (hidden size, batch size, sequence length)
cannot share one program; sweep them with a loop over programs, e.g.
  for m in 50 100 200; do python -m jax_charrnn.sweep ... --hidden_size=$m --workdir=runs/m$m; done
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from jax_charrnn import cli, config, errors, trainer

_OWN: dict = {}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The training flags, --learning_rates, --seeds and the sweep's --workdir."""
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  config.define_flags(config.TrainConfig, **kw)
  config.define_flags(cli.Runtime, **kw)
  _OWN["learning_rates"] = flags.DEFINE_list("learning_rates", ["0.05", "0.1", "0.2"],
                                             "Learning rates to sweep.", **kw)
  _OWN["seeds"] = flags.DEFINE_list("seeds", ["0", "1"], "Seeds to sweep (initial weights).", **kw)
  _OWN["workdir"] = flags.DEFINE_string("workdir", "runs/sweep", "Where the sweep's runs and "
                                        "summary go.", **kw)
  _OWN["overwrite"] = flags.DEFINE_bool("overwrite", False, "Delete the sweep in --workdir "
                                        "first.", **kw)


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  try:
    lrs = [float(x) for x in _OWN["learning_rates"].value]
    seeds = [int(x) for x in _OWN["seeds"].value]
  except ValueError as e:
    raise errors.UserError(f"--learning_rates takes numbers and --seeds integers ({e}).") from None
  train_config = config.from_flags(config.TrainConfig)
  runtime = config.from_flags(cli.Runtime)
  if runtime.multi_process:
    raise errors.UserError(
        "A sweep runs in one process (its runs split over that process's devices); drop "
        "--coordinator_address, --num_processes and --distributed_auto, or train the runs one "
        "by one with jax_charrnn.train.")
  workdir = cli.workdir(_OWN["workdir"].value)
  cli.enable_x64_for(train_config.dtype)
  cli.start_runtime(runtime)
  cli.log_to_file(workdir, "sweep")
  results = trainer.sweep(train_config, lrs, seeds, workdir, overwrite=_OWN["overwrite"].value)
  if results[0].record.interrupted:
    raise SystemExit(130)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
