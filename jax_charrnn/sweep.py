"""Many small runs in one program: `python -m jax_charrnn.sweep`.

  python -m jax_charrnn.sweep --flagfile=experiments/quickstart.flags \\
      --learning_rates=0.05,0.1,0.2 --seeds=0,1,2 --workdir=runs/sweep

trains every (learning rate, seed) pair on the same text inside one jitted
program: the training state gets a leading run axis and `jax.vmap` maps the
trainer's own fused loop over it (the learning rate lives in the optimiser
state, so each run has its own). With several devices (e.g. --cpu_devices=2)
the runs are split over them. A run whose loss diverges is reported and the
others go on. A sweep does not resume and writes no samples or per-run reports
(the train flags for those are accepted and have no effect here).

It writes, under --workdir:
  <run>/metrics.jsonl, <run>/checkpoints/   one directory per run, e.g. lr0.1_seed0, with the
                                            run's checkpoint (`sample --workdir=...` works)
  summary.md, summary.json                  final and best smooth loss per run
  sweep_loss.png                            every run's smooth loss in one plot

Settings that change array shapes (hidden size, batch size, sequence length)
cannot share one program; sweep them with a loop over programs, e.g.
  for m in 50 100 200; do python -m jax_charrnn.sweep ... --hidden_size=$m --workdir=runs/m$m; done
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_charrnn import checkpoint, data, errors, loop, parallel, report, train
from jax_charrnn.config import TrainConfig

_LRS = flags.DEFINE_list("learning_rates", ["0.05", "0.1", "0.2"], "Learning rates to sweep.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds to sweep (initial weights).")


@dataclasses.dataclass
class RunResult:
  name: str
  learning_rate: float
  seed: int
  final_smooth_loss: float
  best_loss: float
  best_step: int
  diverged_at: int | None


def run_name(learning_rate: float, seed: int) -> str:
  return f"lr{learning_rate:g}_seed{seed}"


def sweep(config: TrainConfig, learning_rates: Sequence[float], seeds: Sequence[int],
          workdir: str, *, overwrite: bool = False) -> list[RunResult]:
  """Trains every (learning rate, seed) pair at once; see the module docstring."""
  if not learning_rates or not seeds:
    raise errors.UserError("Give at least one learning rate and one seed.")
  if any(lr <= 0 for lr in learning_rates):
    raise errors.UserError(f"Learning rates must be positive; got {list(learning_rates)}.")
  pairs = [(lr, seed) for lr in learning_rates for seed in seeds]
  names = [run_name(lr, seed) for lr, seed in pairs]
  if len(set(names)) < len(names):
    raise errors.UserError(f"The sweep names some runs twice ({', '.join(names)}); give each "
                           "learning rate and seed once.")
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)  # float64 arrays need it, for the whole process
  if os.path.exists(os.path.join(workdir, "summary.json")) or any(
      checkpoint.has_checkpoint(os.path.join(workdir, n)) for n in names):
    if not overwrite:
      raise errors.UserError(f"The workdir {workdir!r} already holds a sweep. Pass --overwrite "
                             "to replace it, or choose another --workdir.")
    _remove_sweep(workdir, names)
  d = data.load_corpus(config.data_path, config.lowercase, config.seq_length, config.batch_size)
  total = config.total_steps(d.steps_per_epoch)
  configs = [config.replace(learning_rate=lr, seed=seed) for lr, seed in pairs]
  for n in names:
    os.makedirs(os.path.join(workdir, n), exist_ok=True)

  by_run = parallel.run_sharding(len(pairs), config.num_devices)
  states = loop.stack([loop.init_state(c, d.vocab.size) for c in configs])
  inputs, targets = jnp.asarray(d.inputs), jnp.asarray(d.targets)
  if by_run is not None:
    states = jax.device_put(states, by_run)
    replicated = NamedSharding(by_run.mesh, P())
    inputs, targets = jax.device_put(inputs, replicated), jax.device_put(targets, replicated)
  run = loop.make_run_many(config, config.steps_per_call, by_run)
  t0 = time.perf_counter()
  run = run.lower(states, inputs, targets, jnp.int32(1)).compile()
  logging.info("Sweep of %d runs (%s) on %d device(s): %d updates each; compiled in %.1f s.",
               len(pairs), ", ".join(names), 1 if by_run is None else by_run.mesh.size, total,
               time.perf_counter() - t0)

  diverged: dict[int, int] = {}
  step, rows, t_train = 0, [[] for _ in pairs], 0.0
  while step < total:
    n = train.next_event(step, total, config.replace(sample_every=0, report_every=0))
    t = time.perf_counter()
    states, metrics = run(states, inputs, targets, jnp.int32(n - step))
    losses = np.asarray(metrics.loss)[:, : n - step]
    t_train += time.perf_counter() - t
    smooths = np.asarray(metrics.smooth_loss)[:, : n - step]
    for r in np.flatnonzero(~np.isfinite(losses).all(axis=1)):
      if r not in diverged:
        diverged[r] = step + int(np.flatnonzero(~np.isfinite(losses[r]))[0]) + 1
        logging.warning("Run %s diverged at update %d; the others go on.", names[r], diverged[r])
    step = n
    if train.due(step, config.log_every) or step == total:
      for r in range(len(pairs)):
        rows[r].append({"step": step, "epoch": step / d.steps_per_epoch,
                        "loss": float(losses[r, -1]), "smooth_loss": float(smooths[r, -1]),
                        "learning_rate": pairs[r][0], "wall_time": time.time()})
      logging.info("step %d/%d  smooth loss %s", step, total,
                   "  ".join(f"{nm} {s:.3f}" for nm, s in zip(names, smooths[:, -1])))
    if train.due(step, config.checkpoint_every) or step == total:
      _save_runs(workdir, names, configs, d, states, step, rows)
      rows = [[] for _ in pairs]

  results = []
  for r, (name, (lr, seed)) in enumerate(zip(names, pairs)):
    results.append(RunResult(name, lr, seed, float(states.smooth_loss[r]),
                             float(states.best_loss[r]), int(states.best_step[r]),
                             diverged.get(r)))
  _write_summary(workdir, config, d, results, total, t_train)
  logging.info("Sweep done in %.1f s of training: %s", t_train, os.path.join(workdir, "summary.md"))
  return results


def _remove_sweep(workdir: str, names: Sequence[str]) -> None:
  """Deletes what a sweep wrote (its runs, old and new, and the summary), nothing else."""
  old = []
  summary = os.path.join(workdir, "summary.json")
  if os.path.exists(summary):
    with open(summary) as f:
      old = [r["name"] for r in json.load(f).get("runs", [])]
  for name in set(old) | set(names):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  for name in ("summary.json", "summary.md", "sweep_loss.png"):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))


def _save_runs(workdir, names, configs, d, states, step, rows) -> None:
  """Each run's metrics rows and a normal checkpoint in its own directory."""
  for r, (name, cfg) in enumerate(zip(names, configs)):
    run_dir = os.path.join(workdir, name)
    report.append_metrics(run_dir, rows[r])
    state = jax.tree.map(lambda x, r=r: jax.device_put(x[r], jax.local_devices()[0]), states)
    with checkpoint.make_manager(run_dir) as mngr:
      checkpoint.save(mngr, step, state, train.checkpoint_meta(cfg, d, state, step))
      mngr.wait_until_finished()


def _write_summary(workdir: str, config: TrainConfig, d: data.Corpus,
                   results: list[RunResult], total: int, train_seconds: float) -> None:
  ranked = sorted(results, key=lambda r: (r.diverged_at is not None, r.final_smooth_loss))
  best_name = config.best_metric.replace("_", " ")
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"config": dataclasses.asdict(config), "updates": total,
               "train_seconds": train_seconds, "runs": [dataclasses.asdict(r) for r in ranked]},
              f, indent=2)
  lines = [f"# Sweep: {len(results)} runs, {total:,} updates each",
           "",
           f"Text: {d.source}, {len(d.text):,} characters, K = {d.vocab.size}; m = "
           f"{config.hidden_size}, {config.optimizer}; {train_seconds:.1f} s of training for "
           "all runs together.",
           "",
           f"| run | learning rate | seed | final smooth loss | best {best_name} | at update |",
           "|---|---|---|---|---|---|"]
  for r in ranked:
    final = (f"diverged at update {r.diverged_at}" if r.diverged_at is not None
             else f"{r.final_smooth_loss:.3f}")
    lines.append(f"| {r.name} | {r.learning_rate:g} | {r.seed} | {final} | {r.best_loss:.3f} | "
                 f"{r.best_step + 1:,} |")
  lines += ["", "![smooth loss of every run](sweep_loss.png)", ""]
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write("\n".join(lines))
  _plot(workdir, results)


def _plot(workdir: str, results: list[RunResult]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
  for r in results:
    rows = report.read_metrics(os.path.join(workdir, r.name))
    ax.plot([x["step"] for x in rows], [x["smooth_loss"] for x in rows], lw=1.2, label=r.name)
  ax.set_xlabel("update step")
  ax.set_ylabel("smooth loss")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "sweep_loss.png"))
  plt.close(fig)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {' '.join(argv[1:])}. Flags start with --.")
  try:
    lrs = [float(x) for x in _LRS.value]
    seeds = [int(x) for x in _SEEDS.value]
  except ValueError as e:
    raise errors.UserError(f"--learning_rates takes numbers and --seeds integers ({e}).") from None
  f = flags.FLAGS
  if f.coordinator_address or f.num_processes > 1 or f.distributed_auto:
    raise errors.UserError(
        "A sweep runs in one process (its runs split over that process's devices); drop "
        "--coordinator_address, --num_processes and --distributed_auto, or train the runs one "
        "by one with jax_charrnn.train.")
  train.start_runtime(f.cpu_devices, "", 1, 0, False, 300)
  workdir = flags.FLAGS.workdir if flags.FLAGS["workdir"].present else "runs/sweep"
  sweep(train.config_from_flags(), lrs, seeds, workdir, overwrite=flags.FLAGS.overwrite)


if __name__ == "__main__":
  errors.run_cli(main)
