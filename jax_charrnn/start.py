"""Where runs start: fresh, or restored from their workdirs' checkpoints; a lone run and a
sweep's runs alike.

  plan = Plan.lone(config, workdir)          # train: the run lives in workdir itself
  plan = Plan.of_sweep(config, lrs, seeds, root)  # sweep: a directory per run under root
  states, records = begin(plan, targets, corpus, console, resume=..., overwrite=...)

`begin` is the one start/restore path: it clears the workdir for a new run
(rundir.clear, asked or when nothing is there), or refuses what cannot go on
(another sweep, another run's settings, --resume off), or restores every run
at the newest step that all of them hold intact, setting damaged steps aside
and saying so. A restored run's record (record.RunRecord) comes back from its
checkpoint: its earlier training time, its first loss, how its gradients were
computed. A decaying learning rate spread over another length than the saved
run's is warned of (`schedule_change`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from jax_charrnn import checkpoint, errors, loop, parallel, rundir, walk
from jax_charrnn import config as config_lib
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console
from jax_charrnn.record import RunRecord


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to train where: one run (train), or several sharing one program (sweep)."""

  config: TrainConfig                # the settings the runs share
  root: str                          # the --workdir: a lone run's own directory, a sweep's root
  names: tuple[str, ...]             # one per run, in the program's order
  configs: tuple[TrainConfig, ...]   # each run's (a sweep's differ in learning rate and seed)
  sweep: bool = False

  @classmethod
  def lone(cls, config: TrainConfig, workdir: str) -> "Plan":
    return cls(config, workdir, (os.path.basename(os.path.normpath(workdir)),), (config,))

  @classmethod
  def of_sweep(cls, config: TrainConfig, learning_rates: Sequence[float], seeds: Sequence[int],
               root: str) -> "Plan":
    """Every (learning rate, seed) pair, in that order, each run in root/lr<rate>_seed<seed>."""
    if not learning_rates or not seeds:
      raise errors.UserError("Give at least one learning rate and one seed.")
    if any(not lr > 0 for lr in learning_rates):
      raise errors.UserError(f"Learning rates must be positive; got {list(learning_rates)}.")
    pairs = [(lr, seed) for lr in learning_rates for seed in seeds]
    names = tuple(run_name(lr, seed) for lr, seed in pairs)
    if len(set(names)) < len(names):
      raise errors.UserError(f"The sweep names some runs twice ({', '.join(names)}); give each "
                             "learning rate and seed once.")
    configs = tuple(config.replace(learning_rate=lr, seed=seed) for lr, seed in pairs)
    return cls(config, root, names, configs, sweep=True)

  @property
  def what(self) -> str:
    return "sweep" if self.sweep else "run"

  def workdir(self, r: int) -> str:
    return os.path.join(self.root, self.names[r]) if self.sweep else self.root


def run_name(learning_rate: float, seed: int) -> str:
  return f"lr{learning_rate:g}_seed{seed}"


def begin(plan: Plan, targets: Sequence[Any], corpus: walk.Corpus, console: Console, *,
          resume: bool = True, overwrite: bool = False) -> tuple[list, list[RunRecord]]:
  """Each run's starting state and record: all fresh, or all restored at one step.

  Args:
    plan: the runs and their directories (checked and locked by the caller).
    targets: each run's fresh state, placed where it trains (restoring fills it).
    corpus: the text they train on.
    resume, overwrite: --resume and --overwrite.

  Raises:
    UserError: a workdir holding another sweep, or this run with --resume off; a
      checkpoint of other settings or text; no step every run holds intact.
  """
  total = plan.config.total_steps(corpus.steps_per_epoch)
  existing = rundir.existing_runs(plan.root, plan.sweep)
  # Every process looks before process 0 changes anything (on a shared workdir).
  parallel.barrier("jax_charrnn: workdir read")
  if existing and not overwrite:
    _check_can_resume(plan, existing, resume)
    states, records = _restore(plan, targets, corpus, total, console)
  else:
    if existing:
      console.say(f"--overwrite: deleting the earlier {plan.what} in {plan.root}.")
    if parallel.is_primary():
      if plan.sweep:
        rundir.clear_sweep(plan.root, sorted(set(existing) | set(plan.names)))
      else:
        rundir.clear(plan.root)
    states = list(targets)
    records = [RunRecord(plan.names[r], plan.workdir(r), plan.configs[r], total)
               for r in range(len(plan.names))]
  parallel.barrier("jax_charrnn: workdir ready")
  if parallel.is_primary():
    for r in range(len(plan.names)):
      os.makedirs(plan.workdir(r), exist_ok=True)
  return states, records


def _check_can_resume(plan: Plan, existing: list[str], resume: bool) -> None:
  if plan.sweep and sorted(existing) != sorted(plan.names):
    raise errors.UserError(
        f"The workdir {plan.root!r} holds another sweep ({', '.join(sorted(existing))}), which "
        f"this command cannot continue (it asks for {', '.join(plan.names)}). Run the same "
        "sweep command again to resume it, pass --overwrite to replace it, or choose another "
        "--workdir.")
  if not resume:
    held = "this sweep" if plan.sweep else "a run"
    raise errors.UserError(
        f"The workdir {plan.root!r} already holds {held}. Resume it (leave --resume on), pass "
        "--overwrite to replace it, or choose another --workdir.")


def _restore(plan: Plan, targets: Sequence[Any], corpus: walk.Corpus, total: int,
             console: Console) -> tuple[list, list[RunRecord]]:
  """Every run restored at the newest step that every run holds intact; damaged steps are set
  aside (process 0 renames them <step>.damaged) and named."""
  runs = range(len(plan.names))
  steps = sorted(set.intersection(*(set(checkpoint.all_steps(plan.workdir(r))) for r in runs)))
  problems = []  # (run, step, why)
  for step in reversed(steps):
    restored = []
    for r in runs:
      same_run = lambda meta, r=r: rundir.check_same_run(plan.workdir(r), meta, plan.configs[r],
                                                         corpus)
      try:
        restored.append(checkpoint.restore_step(plan.workdir(r), targets[r], step,
                                                check_meta=same_run))
      except checkpoint.Damaged as e:
        problems.append((r, step, str(e)))
        break
    if len(restored) == len(plan.names):
      _set_aside(plan, problems, step, console)
      records = [RunRecord.resumed(meta, plan.names[r], plan.workdir(r), plan.configs[r], total)
                 for r, (_, meta) in zip(runs, restored)]
      if not plan.sweep:  # a frozen run of a sweep taken up alone trains, and stops if it diverges
        records[0].diverged_at = None
      _say_resumed(plan, records, restored[0][1], corpus, console)
      return [state for state, _ in restored], records
  if not plan.sweep:
    raise checkpoint.Damaged(checkpoint.no_intact(plan.root, [(s, w) for _, s, w in problems]))
  raise errors.UserError(
      f"The sweep in {plan.root!r} has no step that every run holds intact"
      + "".join(f"; {plan.names[r]} at step {s}: {why}" for r, s, why in problems)
      + ". Start it again with --overwrite.")


def _set_aside(plan: Plan, problems: list, step: int, console: Console) -> None:
  """Names each damaged step passed over (and, on process 0, renames it <step>.damaged); a
  sweep's steps after `step` that some runs hold would collide with the steps saved again."""
  writer = parallel.is_primary()
  for r, bad, why in problems:
    where = checkpoint.checkpoint_dir(plan.workdir(r))
    back = (f". The sweep goes back to step {step}, which every run has intact" if plan.sweep
            else f"; using step {step} instead")
    kept = f" It is kept as {checkpoint.quarantine(plan.workdir(r), bad)}." if writer else ""
    console.warn(f"The checkpoint at step {bad} in {where!r} is damaged ({why}){back}.{kept}")
  if writer:
    for r in range(len(plan.names)):
      for later in checkpoint.all_steps(plan.workdir(r)):
        if later > step:
          checkpoint.quarantine(plan.workdir(r), later, "unused")


def _say_resumed(plan: Plan, records: list[RunRecord], meta: dict, corpus: walk.Corpus,
                 console: Console) -> None:
  """Where the runs resume, a change of gradient method, and a learning rate re-spread."""
  record = records[0]
  if plan.sweep:
    console.say(f"Resumed the sweep's {len(records)} runs from their checkpoints at step "
                f"{record.step}.")
  else:
    console.say(f"Resumed from the checkpoint at step {record.step} (epoch {meta['epoch']}) in "
                f"{plan.root}.")
  spans = record.method_spans()
  if record.gradient_methods[-1][0] == record.step and spans:  # this session changes --grad
    done = " and ".join(f"{a:,}-{b:,} of this run used {m} gradients" for a, b, m in spans)
    console.say(f"Updates {done}; from update {record.step + 1:,} on it uses "
                f"{record.config.grad} (the checkpoint and report.md record both).")
  note = schedule_change(meta, record.config, corpus.steps_per_epoch, record.total)
  if note and plan.sweep:  # the runs share the length and the schedule; only their rates differ
    note += f" (The rates are {record.name}'s; every run of the sweep is spread alike.)"
  if note:
    console.warn(note)


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
  saved_total = config_lib.run_length(int(saved.get("num_steps", 0)),
                                      int(saved.get("epochs", 0)), steps_per_epoch)
  if saved_total <= 0 or saved_total == total:
    return None
  rate = lambda c: loop.learning_rate_at(c, steps_per_epoch, step)
  return (f"The checkpoint's run is {saved_total:,} updates long; this one is {total:,}. Its "
          f"{config.lr_schedule} learning-rate decay ends at the last update, so it is spread "
          f"over the new length: update {step + 1:,} uses {rate(config):.4g} where the saved run "
          f"would have used {rate(config.replace(num_steps=saved_total)):.4g}, and the run does "
          f"not continue the saved one exactly. To continue it, resume with the saved length, "
          f"--num_steps={saved_total}.")
