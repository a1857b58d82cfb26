"""Training runs as library calls: `train` (one run) and `sweep` (many runs in one program).

Both follow the same order: data -> the network -> each run's start (fresh, or
its workdir's checkpoint when that continues the same run) -> one compiled
program -> the host loop (hostloop.py), which does the rest. The command
lines (train.py, sweep.py) only turn flags into these calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_charrnn import checkpoint, data, errors, hostloop, loop, optim, parallel, report
from jax_charrnn.config import TrainConfig, differences
from jax_charrnn.console import Console
from jax_charrnn.hostloop import Diverged, Run, Summary  # noqa: F401  (part of this API)
from jax_charrnn.lock import LOCK_FILE, WorkdirLock

SWEEP_FILES = ("summary.json", "summary.md", "sweep_loss.png")


# ---- the programs the host loop drives ----

class OneRun:
  """One run on a device mesh: its streams split over the devices (of every process)."""

  num_runs = 1

  def __init__(self, config: TrainConfig, net, state: loop.TrainState, corpus: data.Corpus,
               mesh, shardings):
    self.state = state
    self.inputs = parallel.put_streams(corpus.inputs, mesh)
    self.targets = parallel.put_streams(corpus.targets, mesh)
    t = time.perf_counter()
    self._run = loop.make_run_steps(config, net, config.steps_per_call, shardings).lower(
        state, self.inputs, self.targets, jnp.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t
    self._shardings = shardings
    self._keep = jax.jit(loop.keep_as_best, out_shardings=shardings)

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
    return parallel.to_host(m.loss)[None, :n], parallel.to_host(m.smooth_loss)[None, :n]

  def state_of(self, r: int) -> loop.TrainState:
    del r
    return self.state

  def learning_rates(self) -> np.ndarray:
    return np.asarray([parallel.to_host(optim.learning_rate(self.state.opt_state))])

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    del r
    next_x = parallel.put(np.asarray(next_x, np.int32), self._shardings.best_x)
    self.state = self._keep(self.state, metric, next_x)


class ManyRuns:
  """R runs in one vmapped program (a leading run axis), split over this process's devices."""

  def __init__(self, config: TrainConfig, net, states: loop.TrainState, corpus: data.Corpus):
    self.num_runs = int(states.step.shape[0])
    by_run = parallel.run_sharding(self.num_runs, config.num_devices)
    self.inputs, self.targets = jnp.asarray(corpus.inputs), jnp.asarray(corpus.targets)
    if by_run is not None:
      states = jax.device_put(states, by_run)
      replicated = NamedSharding(by_run.mesh, P())
      self.inputs = jax.device_put(self.inputs, replicated)
      self.targets = jax.device_put(self.targets, replicated)
    self.devices = 1 if by_run is None else by_run.mesh.size
    self._by_run, self._set_run = by_run, None
    self.state = states
    t = time.perf_counter()
    self._run = loop.make_run_many(config, net, config.steps_per_call, by_run).lower(
        states, self.inputs, self.targets, jnp.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
    return np.asarray(m.loss)[:, :n], np.asarray(m.smooth_loss)[:, :n]

  def state_of(self, r: int) -> loop.TrainState:
    device = jax.local_devices()[0]
    return jax.tree.map(lambda x: jax.device_put(x[r], device), self.state)

  def learning_rates(self) -> np.ndarray:
    return np.asarray(optim.learning_rate(self.state.opt_state))

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    def set_run(states, r, metric, next_x):
      one = loop.keep_as_best(loop.unstack(states, r), metric, next_x)
      return jax.tree.map(lambda all_runs, x: all_runs.at[r].set(x), states, one)
    if self._set_run is None:
      self._set_run = jax.jit(set_run, out_shardings=self._by_run)
    self.state = self._set_run(self.state, jnp.int32(r), metric, jnp.asarray(next_x, jnp.int32))


def load_corpus(config: TrainConfig) -> data.Corpus:
  """The text, vocabulary, training chunks and held-out tail that `config` asks for."""
  return data.load_corpus(config.data_path, lowercase=config.lowercase,
                          raw_newlines=config.raw_newlines, seq_length=config.seq_length,
                          batch_size=config.batch_size, val_fraction=config.val_fraction)


# ---- workdirs ----

def check_workdir(workdir: str) -> None:
  """The workdir exists (or is made) and can be written; its checkpoints/ is a directory."""
  try:
    workdir.encode("utf-8")
  except UnicodeEncodeError:
    raise errors.UserError(f"The workdir name {workdir!r} is not valid UTF-8; choose a name "
                           "that is.") from None
  ckpt = checkpoint.checkpoint_dir(workdir)
  if os.path.exists(ckpt) and not os.path.isdir(ckpt):
    raise errors.UserError(
        f"{ckpt!r} is a file, where the run keeps its checkpoints (a directory). Move it away, "
        "or choose another --workdir; nothing was changed.")
  try:
    os.makedirs(workdir, exist_ok=True)
    # One probe file per process: processes of one run share the workdir.
    probe = os.path.join(workdir, f".write_test.{jax.process_index()}.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise errors.UserError(f"Cannot write to the workdir {workdir!r} ({e.strerror}). Pass a "
                           "directory you can write to with --workdir.") from None


# What a run (or a sweep) leaves in its workdir; anything else there is someone else's.
_OWN_NAMES = set(report.ALL_FILES) | {"checkpoints", "train.log", "sweep.log", LOCK_FILE,
                                      *SWEEP_FILES}


def foreign_files(workdir: str) -> list[str]:
  """Files in a workdir that shows no sign of a jax_charrnn run (no .lock), sorted; [] if it
  is empty, new, or a run's."""
  if not os.path.isdir(workdir):
    return []
  names = [n for n in os.listdir(workdir) if not n.startswith(".write_test.")]
  if LOCK_FILE in names:
    return []
  ours = lambda n: n in _OWN_NAMES and n != report.REPORT or re.fullmatch(
      r"(train|sweep)(\.process\d+)?\.log", n)
  return sorted(n for n in names if not ours(n))


def check_memory(config: TrainConfig, vocab_size: int) -> None:
  """Refuses a run that cannot fit the memory, with the estimate (before XLA aborts)."""
  need = estimate_bytes(config, vocab_size)
  have = _memory_bytes()
  if have and need > 0.9 * have:
    raise errors.UserError(
        f"This run needs about {need / 2**30:,.1f} GiB (parameters, optimiser state, the best "
        f"copy and the activations of one chunk) and the device has {have / 2**30:,.1f} GiB. "
        "Use a smaller --hidden_size, --num_layers, --batch_size or --seq_length.")


def estimate_bytes(config: TrainConfig, vocab_size: int) -> int:
  """A lower bound of a run's memory: params x (1 + optimiser slots + grads + best copy + flat
  copies) and every layer's stored activations for one chunk."""
  from jax_charrnn import cells  # pylint: disable=g-import-not-at-top
  H, K, L = config.hidden_size, vocab_size, config.num_layers
  G = cells.get(config.cell).gates if config.cell in cells.names() else 4
  params = G * H * (K + H + 2) + (L - 1) * G * H * (2 * H + 2) + K * H + K
  slots = {"adagrad": 1, "rmsprop": 1, "sgd": 0}.get(config.optimizer, 2)
  activations = config.seq_length * config.batch_size * (L * H * (2 * G + 4) + 3 * K)
  itemsize = 8 if config.dtype == "float64" else 4
  return itemsize * (params * (5 + slots) + activations)


def _memory_bytes() -> int:
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(stats["bytes_limit"])
  except Exception:  # pylint: disable=broad-except  (CPU devices have no memory stats)
    pass
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    return 0


def _saved_differences(meta: dict, config: TrainConfig, corpus: data.Corpus) -> list[str]:
  """What differs between the run saved in a checkpoint and the one asked for."""
  diffs = []
  saved_vocab = meta.get("vocab", "")
  if meta.get("text") != hostloop.fingerprint(corpus.text):
    diffs.append(f"the text ({meta.get('num_chars', '?')} characters saved from "
                 f"{meta.get('source', '?')!r}; {len(corpus.text)} characters now, or other "
                 "content)")
  if saved_vocab != corpus.vocab.to_json():
    old = data.Vocab.from_json(saved_vocab).size if saved_vocab else "no"
    diffs.append(f"vocabulary ({old} characters saved, {corpus.vocab.size} in this text)")
  return diffs + differences(meta.get("config", {}), config)


def _check_same_run(workdir: str, meta: dict, config: TrainConfig, corpus: data.Corpus) -> None:
  """A UserError when the checkpoint's meta belongs to another run than the one asked for."""
  diffs = _saved_differences(meta, config, corpus)
  if diffs:
    raise errors.UserError(
        f"The workdir {workdir!r} holds a run with other settings: {'; '.join(diffs)}. "
        "Resume it with the same settings, pass --overwrite to replace it, or choose "
        "another --workdir.")


def _fresh(workdir: str, writer: bool) -> None:
  """Clears a workdir's checkpoints and outputs for a new run."""
  if writer:
    checkpoint.remove_all(workdir)
    report.remove_outputs(workdir)


def _nothing_to_do(runs: Sequence[Run], states: Sequence[loop.TrainState], corpus, net,
                   total: int, console: Console) -> list[Summary]:
  """A finished run asked to train no further: rewrites outputs that are missing or stale."""
  summaries = [hostloop.summarize(run, state, int(parallel.to_host(state.step)), total,
                                  interrupted=False, compile_seconds=0.0, train_seconds=0.0,
                                  chars_per_second=0.0) for run, state in zip(runs, states)]
  step = summaries[0].steps_done
  stale = [run for run in runs if not report.outputs_current(run.workdir)]
  if stale and runs[0].config.val_fraction:
    for run, summary, state in zip(runs, summaries, states):
      run.val = summary.val = hostloop.score(net, state, corpus)
  if stale and parallel.is_primary():
    console.say(f"The run has already made {step} updates ({total} asked for); writing its "
                "missing or outdated outputs...")
    hostloop.finish(runs, summaries, corpus, net)
  else:
    console.warn(f"The run in {runs[0].workdir if len(runs) == 1 else 'this sweep'} has already "
                 f"made {step} updates ({total} asked for): nothing to do. Raise --num_steps or "
                 "--epochs to train it further.")
  return summaries


def _repair_run_files(run: Run, step: int, console: Console) -> None:
  """Cuts the run's files back to the checkpoint's step, repairing torn records (and saying so)."""
  for note in report.repair_run_files(run.workdir, step):
    console.warn(note)


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
  corpus = load_corpus(config)
  total = config.total_steps(corpus.steps_per_epoch)
  net = loop.build_model(config, corpus.vocab.size)
  check_memory(config, corpus.vocab.size)
  mesh = parallel.make_mesh(config.num_devices, config.batch_size)
  console.say(f"Data: {corpus.source}, {len(corpus.text)} characters, K={corpus.vocab.size}; "
              f"{corpus.steps_per_epoch} updates per epoch of {config.batch_size} x "
              f"{config.seq_length} characters; {total} updates in all, on {mesh.size} "
              f"{mesh.devices.flat[0].platform} device(s) in {jax.process_count()} process(es).")
  check_workdir(workdir)
  writer = parallel.is_primary()
  foreign = foreign_files(workdir)
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
    state, meta = checkpoint.restore(
        workdir, fresh, check_meta=lambda meta: _check_same_run(workdir, meta, config, corpus),
        warn=console.warn, set_aside=writer)
    run.earlier_seconds = float(meta.get("train_seconds", 0.0))
    run.first_loss = meta.get("first_loss")
    console.say(f"Resumed from the checkpoint at step {meta['step']} (epoch {meta['epoch']}) in "
                f"{workdir}.")
  else:
    if foreign and not overwrite:
      raise errors.UserError(
          f"The workdir {workdir!r} holds files that no jax_charrnn run left there "
          f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}). Choose another "
          "--workdir, or pass --overwrite to train there anyway (the run's own file names, "
          "report.md among them, are then replaced).")
    if overwrite and saved:
      console.say(f"--overwrite: deleting the earlier run in {workdir}.")
    _fresh(workdir, writer)
  parallel.barrier("jax_charrnn: workdir ready")
  start = int(parallel.to_host(state.step))
  if start >= total:
    return _nothing_to_do([run], [state], corpus, net, total, console)[0]
  if writer:
    _repair_run_files(run, start, console)

  program = OneRun(config, net, state, corpus, mesh, shardings)
  console.say(f"Compiled the training program ({config.steps_per_call} updates per call) in "
              f"{program.compile_seconds:.1f} s.")
  summary, = hostloop.drive(program, [run], corpus, net, start_step=start, total=total,
                            console=console, stop_on_divergence=True)
  if summary.interrupted:
    console.say(f"Stopped at step {summary.steps_done}; the state is saved. Run the same "
                "command again to resume.")
  else:
    if config.best_metric == "val_bpc":
      best = f"best held-out {summary.best_loss:.4f} bits/char after {summary.best_step} updates"
    else:
      best = (f"best {config.best_metric} {summary.best_loss:.3f} at update "
              f"{summary.best_step + 1}")
    val = "" if summary.val is None else f", held-out {summary.val.bits_per_char:.4f} bits/char"
    console.say(
        f"Done: {summary.steps_done} updates, smooth loss {summary.final_smooth_loss:.3f}{val}, "
        f"{best}; {summary.train_seconds:.1f} s of training ({summary.chars_per_second:,.0f} "
        f"chars/s). Report: {os.path.join(workdir, report.REPORT)}")
  return summary


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
  corpus = load_corpus(config)
  total = config.total_steps(corpus.steps_per_epoch)
  net = loop.build_model(config, corpus.vocab.size)
  check_workdir(workdir)
  foreign = [n for n in foreign_files(workdir) if n not in names]
  if foreign and not overwrite:
    raise errors.UserError(
        f"The workdir {workdir!r} holds files that no jax_charrnn sweep left there "
        f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}). Choose another "
        "--workdir, or pass --overwrite to sweep there anyway.")
  with WorkdirLock(workdir):
    return _sweep(config, pairs, names, configs, corpus, total, net, workdir, resume=resume,
                  overwrite=overwrite, console=console)


def _sweep(config, pairs, names, configs, corpus, total, net, workdir, *, resume, overwrite,
           console) -> list[Summary]:
  runs = [Run(name=n, workdir=os.path.join(workdir, n), config=c) for n, c in zip(names, configs)]
  states = _sweep_start(runs, workdir, corpus, resume=resume, overwrite=overwrite,
                        console=console)
  start = int(states[0].step)
  if start >= total:
    return _nothing_to_do(runs, states, corpus, net, total, console)
  for run in runs:
    _repair_run_files(run, start, console)

  program = ManyRuns(config, net, loop.stack(states), corpus)
  console.say(f"Sweep of {len(runs)} runs ({', '.join(names)}) on {program.devices} device(s): "
              f"{total} updates each; compiled in {program.compile_seconds:.1f} s.")
  summaries = hostloop.drive(program, runs, corpus, net, start_step=start, total=total,
                             console=console, stop_on_divergence=False)
  _write_summary(workdir, config, corpus, pairs, summaries, total)
  if summaries[0].interrupted:
    console.say(f"Stopped at step {summaries[0].steps_done}; every run is saved. Run the same "
                "command again to resume.")
  else:
    console.say(f"Sweep done: {summaries[0].train_seconds:.1f} s of training. Summary: "
                f"{os.path.join(workdir, 'summary.md')}")
  return summaries


def _sweep_start(runs: Sequence[Run], workdir: str, corpus: data.Corpus, *, resume: bool,
                 overwrite: bool, console: Console) -> list[loop.TrainState]:
  """Each run's starting state: all fresh, or all restored at the step they share."""
  fresh = [loop.init_state(run.config, corpus.vocab.size) for run in runs]
  saved = [checkpoint.all_steps(run.workdir) for run in runs]
  previous = _previous_runs(workdir)
  if overwrite or (not any(saved) and not previous):
    if overwrite and (any(saved) or previous):
      console.say(f"--overwrite: deleting the earlier sweep in {workdir}.")
    for name in set(previous) | {run.name for run in runs}:
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in SWEEP_FILES:
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
  problems = []
  for step in sorted(common, reverse=True):  # the newest step every run has intact
    states = []
    for run, state in zip(runs, fresh):
      try:
        restored, meta = checkpoint.restore(
            run.workdir, state, step,
            check_meta=lambda m, run=run: _check_same_run(run.workdir, m, run.config, corpus))
      except checkpoint.Damaged as e:
        kept = checkpoint.quarantine(run.workdir, step)
        problems.append(f"{e} It is kept as {kept}.")
        break
      run.earlier_seconds = float(meta.get("train_seconds", 0.0))
      run.diverged_at = meta.get("diverged_at")
      run.first_loss = meta.get("first_loss")
      states.append(restored)
    if len(states) < len(runs):
      continue
    for problem in problems:
      console.warn(f"{problem} The sweep goes back to step {step}, which every run has intact.")
    for run in runs:  # steps past it would collide with the ones the sweep saves again
      for later in checkpoint.all_steps(run.workdir):
        if later > step:
          checkpoint.quarantine(run.workdir, later, "unused")
    console.say(f"Resumed the sweep's {len(runs)} runs from their checkpoints at step {step}.")
    return states
  raise errors.UserError(f"The sweep in {workdir!r} has no step that every run holds intact: "
                         f"{' '.join(problems)} Start it again with --overwrite.")


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


def _write_summary(workdir: str, config: TrainConfig, corpus: data.Corpus, pairs,
                   summaries: Sequence[Summary], total: int) -> None:
  """summary.json, summary.md and sweep_loss.png."""
  results = [dict(name=s.name, learning_rate=lr, seed=seed, final_smooth_loss=s.final_smooth_loss,
                  best_loss=s.best_loss, best_step=s.best_step, diverged_at=s.diverged_at,
                  steps_done=s.steps_done,
                  val_bpc=None if s.val is None else s.val.bits_per_char)
             for (lr, seed), s in zip(pairs, summaries)]
  held_out = bool(config.val_fraction)
  # Ranked by the held-out score where there is one (what generalises), else the smooth loss.
  rank_by = "val_bpc" if held_out else "final_smooth_loss"
  ranked = sorted(results, key=lambda r: (r["diverged_at"] is not None or r[rank_by] is None,
                                          r[rank_by] or 0.0))
  seconds = summaries[0].total_train_seconds
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"config": config.to_dict(), "updates": total, "train_seconds": seconds,
               "runs": ranked}, f, indent=2)
  best_name = config.best_metric.replace("_", " ")
  done = summaries[0].steps_done
  lines = [f"# Sweep: {len(results)} runs, {done:,} of {total:,} updates each",
           "",
           f"Text: {corpus.source}, {len(corpus.text):,} characters, K = {corpus.vocab.size}; "
           f"{loop.build_model(config, corpus.vocab.size).describe()}, {config.optimizer}; "
           f"{seconds:.1f} s of training for all runs together.",
           "",
           f"| run | learning rate | seed | final smooth loss |"
           f"{' held-out bits/char |' if held_out else ''} best {best_name} | at update |",
           "|---|---|---|---|---|---|" + ("---|" if held_out else "")]
  for r in ranked:
    final = (f"diverged at update {r['diverged_at']}" if r["diverged_at"] is not None
             else f"{r['final_smooth_loss']:.3f}")
    val = "" if not held_out else (
        " – |" if r["val_bpc"] is None else f" {r['val_bpc']:.4f} |")
    lines.append(f"| {r['name']} | {r['learning_rate']:g} | {r['seed']} | {final} |{val} "
                 f"{r['best_loss']:.3f} | {r['best_step'] + 1:,} |")
  lines += ["", "![smooth loss of every run](sweep_loss.png)", ""]
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  report.plot_runs(os.path.join(workdir, "sweep_loss.png"),
                   {r["name"]: report.read_metrics(os.path.join(workdir, r["name"]))
                    for r in results})
  logging.info("Sweep summary written to %s", workdir)
