"""Training runs as library calls: `train` (one run) and `sweep` (many runs in one program).

Both are one path, `run`, over a `start.Plan` (a lone run is the plan of one run
in its own directory): the data -> the network and its optimiser (and whether
they fit) -> the workdir (checked, claimed) -> each run's start (fresh, or its
checkpoint when that continues the same run: start.py) -> one compiled program
(programs.py: a device mesh for a lone run, a vmapped program for a sweep) ->
the host loop (hostloop.py), which does the rest. The command lines (train.py,
sweep.py) only turn flags into these calls.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, NamedTuple, Sequence

import jax

from jax_charrnn import (finish, hostloop, loop, memory, parallel, precision, programs, report,
                         rundir, walk)
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console, keep_logs
from jax_charrnn.hostloop import Diverged  # noqa: F401  (part of this API)
from jax_charrnn.lock import WorkdirLock
from jax_charrnn.record import RunRecord
from jax_charrnn.start import Plan, run_name  # noqa: F401  (part of this API)
from jax_charrnn.start import begin


class Result(NamedTuple):
  """A run as training left it: its record, and its state (a loop.TrainState)."""

  record: RunRecord
  state: Any


def train(config: TrainConfig, workdir: str, *, resume: bool = True, overwrite: bool = False,
          console: Console | None = None) -> Result:
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
  return run(Plan.lone(config, workdir), resume=resume, overwrite=overwrite, console=console)[0]


def sweep(config: TrainConfig, learning_rates: Sequence[float], seeds: Sequence[int],
          workdir: str, *, resume: bool = True, overwrite: bool = False,
          console: Console | None = None) -> list[Result]:
  """Trains every (learning rate, seed) pair at once, one run directory each, in one program.

  The training state gets a leading run axis and `jax.vmap` maps the trainer's
  own fused loop over it (the learning rate lives in the optimiser state, so
  each run has its own). A run whose loss diverges is reported and the others
  go on. Running the same sweep again resumes it.

  Returns:
    One Result per run, in the order (learning rate, then seed).
  """
  plan = Plan.of_sweep(config, learning_rates, seeds, workdir)
  return run(plan, resume=resume, overwrite=overwrite, console=console or Console())


def run(plan: Plan, *, resume: bool, overwrite: bool, console: Console) -> list[Result]:
  """Trains the plan's runs: the one path of `train` and `sweep`."""
  config = plan.config
  corpus = walk.corpus_of(config, console.say, console.warn)
  net = loop.build_model(config, corpus.vocab.size)
  slow = precision.slow_bfloat16_warning(config.compute_dtype)
  if slow:
    console.warn(slow)
  tx = loop.make_optimizer(config, corpus.steps_per_epoch)
  memory.check_run(config, net, tx, len(plan.names), "This sweep" if plan.sweep else "This run")
  mesh = None
  if not plan.sweep:
    mesh = parallel.make_mesh(config.num_devices, config.batch_size)
    console.say(_data_line(config, corpus, mesh))
  rundir.check_writable(plan.root)
  for r in range(len(plan.names)):  # each run's files, before anything is changed
    rundir.check_run_files(plan.workdir(r), tensorboard=config.tensorboard)
  if not overwrite:
    rundir.refuse_foreign(plan.root, rundir.foreign_files(plan.root, own=plan.names if
                                                          plan.sweep else ()), plan.what)
  with contextlib.ExitStack() as stack:
    if parallel.is_primary():
      stack.enter_context(WorkdirLock(plan.root))
    keep_logs()  # the run is accepted: its log is written from here (nothing if refused)
    targets, shardings = _fresh_states(plan, net, tx, mesh, corpus.steps_per_epoch)
    states, records = begin(plan, targets, corpus, console, resume=resume, overwrite=overwrite)
    context = hostloop.Context(corpus, net, config, console, freeze_diverged=plan.sweep)
    if records[0].step >= records[0].total:
      records = hostloop.finish_without_training(records, states, context)
      return [Result(r, s) for r, s in zip(records, states)]
    if parallel.is_primary():
      for record in records:
        rundir.check_run_files(record.workdir)
        rundir.repair(record.workdir, record.step, console.warn, record.config)
    step = records[0].step
    if plan.sweep:
      program = programs.ManyRuns(config, net, tx, loop.stack(states), corpus, step)
    else:
      program = programs.OneRun(config, net, tx, states[0], corpus, mesh, shardings, step)
    console.say(_compiled_line(plan, program, records[0].total))
    records = hostloop.drive(program, records, context)
    if plan.sweep:
      finish.sweep_outputs(plan.root, config, records, corpus, net)
    console.say(_last_line(plan, records))
    return [Result(r, program.state_of(i)) for i, r in enumerate(records)]


def _fresh_states(plan: Plan, net, tx, mesh, steps_per_epoch: int) -> tuple[list, Any]:
  """Each run's fresh state, where it trains: a lone run's on the mesh (the carries split
  along the streams; returned with its shardings), a sweep's on the default device."""
  if plan.sweep:  # each run's optimiser state starts with its own learning rate
    return [loop.init_state(c, net, loop.make_optimizer(c, steps_per_epoch))
            for c in plan.configs], None
  config = plan.configs[0]
  shardings = parallel.state_shardings(
      jax.eval_shape(lambda: loop.init_state(config, net, tx)), mesh)
  return [parallel.put(loop.init_state(config, net, tx), shardings)], shardings


def _data_line(config: TrainConfig, corpus: walk.Corpus, mesh) -> str:
  total, unit = config.total_steps(corpus.steps_per_epoch), report.unit_word(config)
  return (f"Data: {corpus.source}, {corpus.num_symbols} {unit}, K={corpus.vocab.size}; "
          f"{corpus.steps_per_epoch} updates per epoch of {config.batch_size} x "
          f"{config.seq_length} {unit}; {total} updates in all, on {mesh.size} "
          f"{mesh.devices.flat[0].platform} device(s) in {jax.process_count()} process(es).")


def _compiled_line(plan: Plan, program: programs.Program, total: int) -> str:
  if plan.sweep:
    return (f"Sweep of {len(plan.names)} runs ({', '.join(plan.names)}) on {program.devices} "
            f"device(s): {total} updates each; compiled in {program.compile_seconds:.1f} s.")
  return (f"Compiled the training program ({plan.config.steps_per_call} updates per call) in "
          f"{program.compile_seconds:.1f} s.")


def _last_line(plan: Plan, records: Sequence[RunRecord]) -> str:
  first = records[0]
  if first.interrupted:
    saved = "every run is saved" if plan.sweep else "the state is saved"
    return f"Stopped at step {first.step}; {saved}. Run the same command again to resume."
  if plan.sweep:
    return (f"Sweep done: {first.timing.session:.1f} s of training. Summary: "
            f"{os.path.join(plan.root, report.SUMMARY_MD)}")
  return report.done_line(first)
