"""Training runs as library calls: `train` (one run) and `sweep` (many runs in one program).

Both follow the same order: data -> the network (and whether it fits) -> the
workdir (checked, claimed) -> each run's start (fresh, or its workdir's
checkpoint when that continues the same run) -> one compiled program
(programs.py) -> the host loop (hostloop.py), which does the rest. The command
lines (train.py, sweep.py) only turn flags into these calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Sequence

import jax

from jax_charrnn import (checkpoint, data, errors, hostloop, loop, memory, optim, outputs,
                         parallel, programs, report, rundir)
from jax_charrnn import config as config_lib
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console
from jax_charrnn.hostloop import Diverged, Run  # noqa: F401  (part of this API)
from jax_charrnn.lock import WorkdirLock
from jax_charrnn.outputs import Summary

# ---- one run ----

def train(config: TrainConfig, workdir: str, *, resume: bool = True, overwrite: bool = False,
          console: Console | None = None) -> Summary:
  """Trains as `config` says, writing checkpoints and reports into `workdir`.

  Runs on every device of every process (see parallel.py): the streams are
  split over the devices; only process 0 writes logs, samples and reports, and
  holds the workdir's lock (a second trainer on it is refused). A float64
  config needs 64-bit JAX enabled first (the entry points do it).

  Args:
    config: the run's settings.
    workdir: where checkpoints, metrics, plots, samples and the report go.
    resume: continue from the latest checkpoint in workdir, if there is one.
    overwrite: delete an earlier run in workdir first.
    console: where progress lines go (default: stdout; quiet on processes > 0).

  Raises:
    UserError: bad data or settings, a workdir holding another run or in use, a
      diverged loss, a run too large for the memory.
  """
  console = console or Console(quiet=not parallel.is_primary())
  corpus = data.corpus_of(config)
  total = config.total_steps(corpus.steps_per_epoch)
  net = loop.build_model(config, corpus.vocab.size)
  memory.check_run(config, corpus.vocab.size)
  mesh = parallel.make_mesh(config.num_devices, config.batch_size)
  console.say(f"Data: {corpus.source}, {len(corpus.text)} characters, K={corpus.vocab.size}; "
              f"{corpus.steps_per_epoch} updates per epoch of {config.batch_size} x "
              f"{config.seq_length} characters; {total} updates in all, on {mesh.size} "
              f"{mesh.devices.flat[0].platform} device(s) in {jax.process_count()} process(es).")
  rundir.check_writable(workdir)
  writer = parallel.is_primary()
  foreign = rundir.foreign_files(workdir)
  with contextlib.ExitStack() as stack:
    if writer:
      stack.enter_context(WorkdirLock(workdir))
    return _train(config, workdir, corpus, net, mesh, total, resume=resume, overwrite=overwrite,
                  foreign=foreign, console=console)


def _train(config, workdir, corpus, net, mesh, total, *, resume, overwrite, foreign,
           console) -> Summary:
  writer = parallel.is_primary()
  shardings = parallel.state_shardings(
      jax.eval_shape(lambda: loop.init_state(config, corpus.vocab.size)), mesh)
  fresh = parallel.put(loop.init_state(config, corpus.vocab.size), shardings)
  run = Run(name=os.path.basename(os.path.normpath(workdir)), workdir=workdir, config=config)
  state = fresh
  saved = checkpoint.has_checkpoint(workdir)
  # Every process looks before process 0 changes anything (on a shared workdir).
  parallel.barrier("jax_charrnn: workdir read")
  if saved and not overwrite:
    if not resume:
      raise errors.UserError(
          f"The workdir {workdir!r} already holds a run. Resume it (leave --resume on), pass "
          "--overwrite to replace it, or choose another --workdir.")
    same_run = lambda meta: rundir.check_same_run(workdir, meta, config, corpus)
    state, meta = checkpoint.restore(workdir, fresh, check_meta=same_run, warn=console.warn,
                                     set_aside=writer)
    run.earlier_seconds = float(meta.get("train_seconds", 0.0))
    run.first_loss = meta.get("first_loss")
    console.say(f"Resumed from the checkpoint at step {meta['step']} (epoch {meta['epoch']}) in "
                f"{workdir}.")
    note = hostloop.resume_grads(run, meta, int(meta["step"]))
    if note:
      console.say(note)
    note = schedule_change(meta, config, corpus.steps_per_epoch, total)
    if note:
      console.warn(note)
  else:
    if not overwrite:
      rundir.refuse_foreign(workdir, foreign)
    if overwrite and saved:
      console.say(f"--overwrite: deleting the earlier run in {workdir}.")
    if writer:
      rundir.clear(workdir)
  parallel.barrier("jax_charrnn: workdir ready")
  start = int(parallel.to_host(state.step))
  if start >= total:
    return hostloop.finish_without_training([run], [state], corpus, net, total, console)[0]
  if writer:
    rundir.repair(workdir, start, console.warn, config)

  program = programs.OneRun(config, net, state, corpus, mesh, shardings)
  console.say(f"Compiled the training program ({config.steps_per_call} updates per call) in "
              f"{program.compile_seconds:.1f} s.")
  summary, = hostloop.drive(program, [run], corpus, net, start_step=start, total=total,
                            console=console, stop_on_divergence=True)
  if summary.interrupted:
    console.say(f"Stopped at step {summary.steps_done}; the state is saved. Run the same "
                "command again to resume.")
  else:
    console.say(_done(summary))
  return summary


def schedule_change(meta: dict, config: TrainConfig, steps_per_epoch: int,
                    total: int) -> str | None:
  """The warning for a resumed run whose decaying learning rate changes with its length.

  A cosine or linear decay ends at the run's last update, so resuming with another
  --num_steps (or --epochs) than the checkpoint's re-spreads the rest of the decay: the rate
  jumps at the resume and the run no longer continues the one that was saved. Other
  schedules do not depend on the length. None when nothing changes.
  """
  step = int(meta["step"])
  if config.lr_schedule not in ("cosine", "linear") or step >= total:
    return None  # (a run already as long as asked for makes no update: nothing to warn of)
  saved = meta.get("config", {})
  saved_total = config_lib.run_length(int(saved.get("num_steps", 0)), int(saved.get("epochs", 0)),
                                      steps_per_epoch)
  if saved_total <= 0 or saved_total == total:
    return None
  rate = lambda n: config.learning_rate * float(optim.schedule(
      config.lr_schedule, n, config.warmup_steps, config.min_lr_ratio)(step))
  return (f"The checkpoint's run is {saved_total:,} updates long; this one is {total:,}. Its "
          f"{config.lr_schedule} learning-rate decay ends at the last update, so it is spread "
          f"over the new length: update {step + 1:,} uses {rate(total):.4g} where the saved run "
          f"would have used {rate(saved_total):.4g}, and the run does not continue the saved "
          f"one exactly. To continue it, resume with the saved length, "
          f"--num_steps={saved_total}.")


def _done(summary: Summary) -> str:
  """The last line of a finished run, e.g. "Done: 55794 updates, smooth loss 40.986, best
  smooth loss 39.301 (the parameters after 55,526 updates); 9.5 s of training (...)."."""
  config = summary.config
  if summary.best_step < 0:
    best = "no best parameters yet"
  elif config.best_metric == "val_bpc":
    best = f"best held-out {summary.best_loss:.4f} bits/char"
  else:
    best = f"best {config.best_metric.replace('_', ' ')} {summary.best_loss:.3f}"
  after = f" (the parameters after {summary.best_step:,} updates)" if summary.best_step >= 0 else ""
  val = "" if summary.val is None else f", held-out {summary.val.bits_per_char:.4f} bits/char"
  return (f"Done: {summary.steps_done} updates, smooth loss {summary.final_smooth_loss:.3f}{val}, "
          f"{best}{after}; {summary.train_seconds:.1f} s of training "
          f"({summary.chars_per_second:,.0f} chars/s). Report: "
          f"{os.path.join(summary.workdir, report.REPORT)}")


# ---- many runs in one program ----

def run_name(learning_rate: float, seed: int) -> str:
  return f"lr{learning_rate:g}_seed{seed}"


def sweep(config: TrainConfig, learning_rates: Sequence[float], seeds: Sequence[int],
          workdir: str, *, resume: bool = True, overwrite: bool = False,
          console: Console | None = None) -> list[Summary]:
  """Trains every (learning rate, seed) pair at once, one run directory each, in one program.

  The training state gets a leading run axis and `jax.vmap` maps the trainer's
  own fused loop over it (the learning rate lives in the optimiser state, so
  each run has its own). A run whose loss diverges is reported and the others
  go on. Running the same sweep again resumes it.

  Returns:
    One Summary per run, in the order (learning rate, then seed).
  """
  console = console or Console()
  if not learning_rates or not seeds:
    raise errors.UserError("Give at least one learning rate and one seed.")
  if any(not lr > 0 for lr in learning_rates):
    raise errors.UserError(f"Learning rates must be positive; got {list(learning_rates)}.")
  pairs = [(lr, seed) for lr in learning_rates for seed in seeds]
  names = [run_name(lr, seed) for lr, seed in pairs]
  if len(set(names)) < len(names):
    raise errors.UserError(f"The sweep names some runs twice ({', '.join(names)}); give each "
                           "learning rate and seed once.")
  configs = [config.replace(learning_rate=lr, seed=seed) for lr, seed in pairs]
  corpus = data.corpus_of(config)
  total = config.total_steps(corpus.steps_per_epoch)
  net = loop.build_model(config, corpus.vocab.size)
  memory.check(memory.estimate_bytes(config, corpus.vocab.size) * len(pairs), "This sweep")
  rundir.check_writable(workdir)
  foreign = rundir.foreign_files(workdir, own=names)
  if not overwrite:
    rundir.refuse_foreign(workdir, foreign, "sweep")
  with WorkdirLock(workdir):
    return _sweep(config, pairs, names, configs, corpus, total, net, workdir, resume=resume,
                  overwrite=overwrite, console=console)


def _sweep(config, pairs, names, configs, corpus, total, net, workdir, *, resume, overwrite,
           console) -> list[Summary]:
  runs = [Run(name=n, workdir=os.path.join(workdir, n), config=c) for n, c in zip(names, configs)]
  states = _sweep_start(runs, workdir, corpus, total, resume=resume, overwrite=overwrite,
                        console=console)
  start = int(states[0].step)
  if start >= total:
    return hostloop.finish_without_training(runs, states, corpus, net, total, console)
  for run in runs:
    rundir.check_run_files(run.workdir)
    rundir.repair(run.workdir, start, console.warn, run.config)

  program = programs.ManyRuns(config, net, loop.stack(states), corpus)
  console.say(f"Sweep of {len(runs)} runs ({', '.join(names)}) on {program.devices} device(s): "
              f"{total} updates each; compiled in {program.compile_seconds:.1f} s.")
  summaries = hostloop.drive(program, runs, corpus, net, start_step=start, total=total,
                             console=console, stop_on_divergence=False)
  outputs.sweep_summary(workdir, config, corpus, net, pairs, summaries, total)
  if summaries[0].interrupted:
    console.say(f"Stopped at step {summaries[0].steps_done}; every run is saved. Run the same "
                "command again to resume.")
  else:
    console.say(f"Sweep done: {summaries[0].train_seconds:.1f} s of training. Summary: "
                f"{os.path.join(workdir, 'summary.md')}")
  return summaries


def _sweep_start(runs: Sequence[Run], workdir: str, corpus: data.Corpus, total: int, *,
                 resume: bool, overwrite: bool, console: Console) -> list[loop.TrainState]:
  """Each run's starting state: all fresh, or all restored at the step they share."""
  fresh = [loop.init_state(run.config, corpus.vocab.size) for run in runs]
  saved = [checkpoint.all_steps(run.workdir) for run in runs]
  previous = _previous_runs(workdir)
  if overwrite or (not any(saved) and not previous):
    if overwrite and (any(saved) or previous):
      console.say(f"--overwrite: deleting the earlier sweep in {workdir}.")
    for name in set(previous) | {run.name for run in runs}:
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in rundir.SWEEP_FILES:
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
    for run in runs:
      os.makedirs(run.workdir, exist_ok=True)
    return fresh
  common = set.intersection(*map(set, saved)) if all(saved) else set()
  if previous and sorted(previous) != sorted(run.name for run in runs) or not common:
    have = ", ".join(sorted(previous)) or "runs without a common checkpoint"
    raise errors.UserError(
        f"The workdir {workdir!r} holds another sweep ({have}), which this command cannot "
        f"continue (it asks for {', '.join(run.name for run in runs)}). Run the same sweep "
        "command again to resume it, pass --overwrite to replace it, or choose another "
        "--workdir.")
  if not resume:
    raise errors.UserError(f"The workdir {workdir!r} already holds this sweep. Resume it (leave "
                           "--resume on), pass --overwrite to replace it, or choose another "
                           "--workdir.")
  return _sweep_restore(runs, fresh, sorted(common), corpus, total, console)


def _sweep_restore(runs: Sequence[Run], fresh: Sequence[loop.TrainState], steps: list[int],
                   corpus: data.Corpus, total: int, console: Console) -> list[loop.TrainState]:
  """Every run restored at the newest of `steps` that every run holds intact (warning, as
  `train` does, when a decaying learning rate is spread over another length than saved)."""
  problems = []
  for step in reversed(steps):
    states, first_meta = [], None
    for run, state in zip(runs, fresh):
      same_run = lambda m, run=run: rundir.check_same_run(run.workdir, m, run.config, corpus)
      try:
        restored, meta = checkpoint.restore(run.workdir, state, step, check_meta=same_run)
      except checkpoint.Damaged as e:
        kept = checkpoint.quarantine(run.workdir, step)
        problems.append(f"{e} It is kept as {kept}.")
        break
      run.earlier_seconds = float(meta.get("train_seconds", 0.0))
      run.diverged_at = meta.get("diverged_at")
      run.first_loss = meta.get("first_loss")
      hostloop.resume_grads(run, meta, step)
      states.append(restored)
      first_meta = first_meta or meta
    if len(states) < len(runs):
      continue
    for problem in problems:
      console.warn(f"{problem} The sweep goes back to step {step}, which every run has intact.")
    for run in runs:  # steps past it would collide with the ones the sweep saves again
      for later in checkpoint.all_steps(run.workdir):
        if later > step:
          checkpoint.quarantine(run.workdir, later, "unused")
    console.say(f"Resumed the sweep's {len(runs)} runs from their checkpoints at step {step}.")
    note = schedule_change(first_meta, runs[0].config, corpus.steps_per_epoch, total)
    if note:  # the runs share the length and the schedule; only their base rates differ
      console.warn(f"{note} (The rates are {runs[0].name}'s; every run of the sweep is spread "
                   "alike.)")
    return states
  raise errors.UserError(f"The sweep in {os.path.dirname(runs[0].workdir)!r} has no step that "
                         f"every run holds intact: {' '.join(problems)} Start it again with "
                         "--overwrite.")


def _previous_runs(workdir: str) -> list[str]:
  """The runs an earlier sweep in workdir recorded (summary.json or run directories)."""
  summary = os.path.join(workdir, "summary.json")
  if os.path.exists(summary):
    try:
      with open(summary, encoding="utf-8") as f:
        return [r["name"] for r in json.load(f).get("runs", [])]
    except (OSError, ValueError, KeyError, TypeError):
      pass
  if not os.path.isdir(workdir):
    return []
  return sorted(n for n in os.listdir(workdir) if checkpoint.has_checkpoint(os.path.join(workdir, n)))
