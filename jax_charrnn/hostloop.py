"""The one host loop: `python -m jax_charrnn.train` and `python -m jax_charrnn.sweep` both run it.

The updates run on the device, up to --steps_per_call of them per jitted call
(loop.py). Between calls the host decides only what is due: progress lines
and metrics rows, samples, checkpoints, a stop (Ctrl-C / SIGTERM, a loss that
became NaN or infinite). At the end it writes every run's outputs (the best
passage, loss.png, report.md). It drives one run or many at once (a sweep's
vmapped program) through the same `Program` interface, so every run, alone or
in a sweep, writes the same files and stops and resumes the same way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
import zlib
from typing import Any, Protocol, Sequence

import jax
import numpy as np

from jax_charrnn import (checkpoint, data, divergence, errors, evaluate, generate, gradcheck, loop,
                         model, parallel, report)
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console


class Diverged(errors.UserError):
  """The loss became NaN or infinite."""


class Program(Protocol):
  """A compiled training program for R runs that share the data (R = 1 for train)."""

  num_runs: int
  compile_seconds: float

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs n updates of every run; returns (losses, smooth losses), float [R, n]."""

  def state_of(self, r: int) -> loop.TrainState:
    """Run r's state (device arrays; sharded over the mesh for a lone run)."""

  def learning_rates(self) -> np.ndarray:
    """Every run's learning rate, read from its optimiser state, [R]."""

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    """Makes run r's current parameters (and carry, and next characters [B]) its best copy."""


@dataclasses.dataclass
class Run:
  """One run's place on disk and what the host keeps about it between device calls."""

  name: str                     # how progress lines and the sweep's summary call it
  workdir: str
  config: TrainConfig
  earlier_seconds: float = 0.0  # training time of earlier sessions (from the checkpoint)
  rows: list = dataclasses.field(default_factory=list)  # metrics rows not yet written
  diverged_at: int | None = None
  val: evaluate.Score | None = None  # the latest held-out score
  first_loss: float | None = None    # the run's first chunk loss (max_loss_ratio's yardstick)


@dataclasses.dataclass
class Summary:
  """How a run ended: what `train` returns, one per run for a sweep."""

  name: str
  workdir: str
  state: loop.TrainState
  steps_done: int
  total_steps: int
  final_smooth_loss: float
  best_loss: float
  best_step: int
  interrupted: bool
  diverged_at: int | None
  compile_seconds: float
  train_seconds: float          # this session
  total_train_seconds: float    # every session of the run
  chars_per_second: float
  val: evaluate.Score | None = None  # the held-out score at the end (with --val_fraction)


class Interrupts:
  """SIGINT/SIGTERM become a flag the host loop reads between device calls.

  The first signal asks the loop to save and stop after the current call;
  later ones are acknowledged and change nothing, so a save in progress is
  never cut short.
  """

  def __init__(self, console: Console):
    self.console = console
    self.signal: int | None = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.signal is not None:
      self.console.warn(f"Received {name}: already stopping; saving...")
      return
    self.signal = signum
    self.console.warn(f"Received {name}: saving the state after the current device call, "
                      "then stopping.")

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


def next_event(step: int, total: int, config: TrainConfig) -> int:
  """The first step after `step` at which the host has something to do."""
  stop = min(total, step + config.steps_per_call)
  evals = config.eval_every if config.val_fraction else 0
  for every in (config.log_every, config.sample_every, config.report_every,
                config.checkpoint_every, evals):
    if every > 0:
      stop = min(stop, (step // every + 1) * every)
  return stop


def due(step: int, every: int) -> bool:
  """Whether something done every `every` updates (0: never) is due after update `step`."""
  return every > 0 and step % every == 0


def _disk_error(e: BaseException) -> bool:
  """Whether an exception (from orbax or tensorstore, which wrap them) is a file-system error."""
  text = str(e)
  return (isinstance(e, OSError) or "No space left on device" in text
          or "os_error_code" in text or "Permission denied" in text)


def _save_failed(run: Run, step: int, error: BaseException) -> errors.UserError:
  """The paragraph for a checkpoint that could not be written (a full disk, say)."""
  last = [s for s in checkpoint.all_steps(run.workdir) if s != step]
  text = str(getattr(error, "strerror", None) or error)
  reason = ("No space left on device" if "No space left on device" in text
            else " ".join(text.split())[:200])
  return errors.UserError(
      f"Could not save the checkpoint at step {step} in {run.workdir!r} ({reason}). The newest "
      f"complete checkpoint is {'step %d' % last[-1] if last else 'none'}; nothing older was "
      "deleted. Free some space (or fix the directory) and run the same command again to "
      "resume from it.")


def fingerprint(text: str) -> str:
  return f"{len(text)}:{zlib.crc32(text.encode('utf-8')):08x}"


def checkpoint_meta(config: TrainConfig, corpus: data.Corpus, state: loop.TrainState, step: int,
                    train_seconds: float) -> dict:
  """The JSON half of a checkpoint: enough to resume, to sample, and for a person to read."""
  return {
      "vocab": corpus.vocab.to_json(), "config": config.to_dict(), "step": step,
      "epoch": step // corpus.steps_per_epoch, "position": step % corpus.steps_per_epoch,
      "steps_per_epoch": corpus.steps_per_epoch, "next_char": corpus.next_char(step),
      "smooth_loss": float(parallel.to_host(state.smooth_loss)),
      "best_loss": float(parallel.to_host(state.best_loss)),
      "best_step": int(parallel.to_host(state.best_step)), "source": corpus.source,
      "num_chars": len(corpus.text), "text": fingerprint(corpus.text),
      "train_seconds": train_seconds,
  }


def score(net: model.Model, state: loop.TrainState, corpus: data.Corpus) -> evaluate.Score:
  """The held-out tail's score under the state's current parameters (host copies: every
  process computes the same number without a collective)."""
  return evaluate.score_ids(net, parallel.tree_to_host(state.params), corpus.val_ids)


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
      else f"{seconds // 60}m{seconds % 60:02d}s"


class _Texts:
  """Samples from a run's state, on the writing process, from host copies (no collective)."""

  def __init__(self, net: model.Model, corpus: data.Corpus, config: TrainConfig):
    self.net, self.corpus, self.config = net, corpus, config

  def sample(self, state: loop.TrainState, step: int, length: int, best: bool = False) -> str:
    key = jax.random.fold_in(jax.random.wrap_key_data(parallel.to_host(state.key)), step)
    if best:
      params, carry = state.best_params, state.best_carry
      x0 = int(parallel.first_row(state.best_x))
    else:
      params, carry, x0 = state.params, state.carry, self.corpus.next_char(step)
    return generate.generate(self.net, parallel.tree_to_host(params), self.corpus.vocab,
                             parallel.tree_first_row(carry), x0, length, key,
                             self.config.temperature)[0]


def drive(program: Program, runs: Sequence[Run], corpus: data.Corpus, net: model.Model, *,
          start_step: int, total: int, console: Console, stop_on_divergence: bool) -> list[Summary]:
  """Trains every run from `start_step` to `total`, writing their files; see the module docstring.

  Args:
    program: the compiled program, its state at `start_step`.
    runs: one Run per run of the program, in its order.
    corpus: the text they train on.
    net: the network (for samples).
    start_step, total: where the runs are and where they stop.
    console: where progress goes.
    stop_on_divergence: raise `Diverged` when a run's loss is not finite (a lone
      run); otherwise that run is reported and the others go on (a sweep).

  Returns:
    One Summary per run.
  """
  config = runs[0].config  # the settings the runs share (the host loop's are the same)
  writer = parallel.is_primary()
  texts = _Texts(net, corpus, config)
  chars_per_step = config.seq_length * config.batch_size
  sweep = len(runs) > 1
  if start_step == 0 and writer:
    for r, run in enumerate(runs):
      report.append_sample(run.workdir, 0, texts.sample(program.state_of(r), 0,
                                                        config.sample_length), None)

  step, train_seconds, interrupted = start_step, 0.0, False
  interval_start, interval_step = time.perf_counter(), step
  mngrs = [checkpoint.make_manager(run.workdir) for run in runs]

  def save(step):
    for r, run in enumerate(runs):
      if writer:
        report.append_metrics(run.workdir, run.rows)
      run.rows = []
      state = program.state_of(r)
      # Every process takes part; orbax coordinates who writes what.
      meta = checkpoint_meta(run.config, corpus, state, step, run.earlier_seconds + train_seconds)
      meta.update(diverged_at=run.diverged_at, first_loss=run.first_loss,
                  val_bpc=None if run.val is None else run.val.bits_per_char)
      try:
        checkpoint.save(mngrs[r], step, state, meta)
      except Exception as e:  # pylint: disable=broad-except
        if not _disk_error(e):
          raise
        raise _save_failed(run, step, e) from None

  # The signal handler stays for the whole of it: a signal during the final save or the
  # report is acknowledged, never a KeyboardInterrupt that cuts the save short.
  with Interrupts(console) as interrupts:
    try:
      while step < total:
        n = next_event(step, total, config)
        t = time.perf_counter()
        losses, smooths = program.advance(n - step)  # waits for the device
        train_seconds += time.perf_counter() - t
        for r, run in enumerate(runs):
          if run.first_loss is None and np.isfinite(losses[r, 0]):
            run.first_loss = float(losses[r, 0])
          bad = np.flatnonzero(divergence.diverged(losses[r], smooths[r], run.first_loss,
                                                   config.max_loss_ratio))
          if not bad.size or run.diverged_at is not None:
            continue
          run.diverged_at = step + int(bad[0]) + 1
          what = divergence.describe(losses[r][bad[0]], smooths[r][bad[0]], run.first_loss,
                                     config.max_loss_ratio)
          if stop_on_divergence:
            if writer:
              report.append_metrics(run.workdir, run.rows)
            last = mngrs[r].latest_step()
            raise Diverged(
                f"{what[0].upper()}{what[1:]} at update {run.diverged_at} (epoch "
                f"{(run.diverged_at - 1) // corpus.steps_per_epoch + 1}); training stopped. The "
                f"last good checkpoint is {'step %d' % last if last is not None else 'none'} in "
                f"{run.workdir!r}. Lower --learning_rate or --clip (with --overwrite, or in "
                "another --workdir), or check the data.")
          console.warn(f"Run {run.name} diverged at update {run.diverged_at} ({what}; "
                       "its best parameters are kept); the others go on.")
        step = n
        stop = parallel.any_process(interrupts.signal is not None)
        if writer:
          for r, run in enumerate(runs):
            report.append_step_losses(run.workdir, losses[r], smooths[r])

        scores = [None] * len(runs)
        if config.val_fraction and (due(step, config.eval_every) or step == total):
          for r, run in enumerate(runs):
            if run.diverged_at is None:
              state = program.state_of(r)
              scores[r] = run.val = score(net, state, corpus)
              if (config.best_metric == "val_bpc" and
                  scores[r].bits_per_char < float(parallel.to_host(state.best_loss))):
                program.keep_best(r, scores[r].bits_per_char, corpus.next_chars(step))
        evaluated = any(s is not None for s in scores)
        if due(step, config.log_every) or step == total or evaluated:
          now = time.perf_counter()
          speed = (step - interval_step) * chars_per_step / max(now - interval_start, 1e-9)
          interval_start, interval_step = now, step
          rates = program.learning_rates()
          for r, run in enumerate(runs):
            run.rows.append({
                "step": step, "epoch": step / corpus.steps_per_epoch,
                "loss": float(losses[r, -1]), "smooth_loss": float(smooths[r, -1]),
                "loss_per_char": float(losses[r, -1]) / (
                    1 if config.loss_reduction == "mean" else chars_per_step),
                "learning_rate": float(str(np.float32(rates[r]))),
                "chars_per_s": speed, "wall_time": time.time(),
            })
            if scores[r] is not None:
              run.rows[-1].update(val_bpc=scores[r].bits_per_char,
                                  val_loss_per_char=scores[r].nats_per_char)
          eta = (total - step) * chars_per_step / max(speed, 1e-9)
          where = (f"step {step}/{total} (epoch {step / corpus.steps_per_epoch:.2f}, "
                   f"{100 * step / total:.1f}%)")
          if sweep:
            losses_now = "  ".join(f"{run.name} {smooths[r, -1]:.3f}" for r, run in enumerate(runs))
            console.say(f"{where}  smooth loss: {losses_now}  {speed * len(runs):,.0f} chars/s  "
                        f"ETA {_hms(eta)}")
          else:
            console.say(f"{where}  loss {losses[0, -1]:.3f}  smooth {smooths[0, -1]:.3f}  "
                        f"{speed:,.0f} chars/s  ETA {_hms(eta)}")
          if evaluated:
            console.say(f"held-out at step {step}: " + "  ".join(
                f"{'' if not sweep else run.name + ' '}{s.bits_per_char:.4f} bits/char "
                f"({s.nats_per_char:.4f} nats/char)" for run, s in zip(runs, scores)
                if s is not None))
        log_sample = due(step, config.sample_every) and not sweep
        keep_sample = due(step, config.report_every)
        if writer and (log_sample or keep_sample):  # one text serves both when both are due
          for r, run in enumerate(runs):
            if run.diverged_at is not None:
              continue
            text = texts.sample(program.state_of(r), step, config.sample_length)
            if log_sample:
              console.say(f"sample at step {step}:\n{text}")
            if keep_sample:
              report.append_sample(run.workdir, step, text, float(smooths[r, -1]))
        if due(step, config.checkpoint_every) or step == total or stop:
          save(step)
        if stop:
          interrupted = True
          break
    finally:
      for run, mngr in zip(runs, mngrs):
        try:
          mngr.wait_until_finished()
        except Exception as e:  # pylint: disable=broad-except  (orbax wraps the OSError)
          raise _save_failed(run, step, e) from None
        finally:
          mngr.close()

    speed = (step - start_step) * chars_per_step / max(train_seconds, 1e-9)
    summaries = [summarize(run, program.state_of(r), step, total, interrupted=interrupted,
                           compile_seconds=program.compile_seconds, train_seconds=train_seconds,
                           chars_per_second=speed) for r, run in enumerate(runs)]
    if writer:
      console.say("Writing the report (loss plot, best passage"
                  f"{', gradient check' if config.report_gradcheck_entries else ''})...")
      finish(runs, summaries, corpus, net, texts)
    return summaries


def summarize(run: Run, state: loop.TrainState, steps_done: int, total: int, *,
              interrupted: bool, compile_seconds: float, train_seconds: float,
              chars_per_second: float) -> Summary:
  return Summary(name=run.name, workdir=run.workdir, state=state, steps_done=steps_done,
                 total_steps=total, final_smooth_loss=float(parallel.to_host(state.smooth_loss)),
                 best_loss=float(parallel.to_host(state.best_loss)),
                 best_step=int(parallel.to_host(state.best_step)), interrupted=interrupted,
                 diverged_at=run.diverged_at, compile_seconds=compile_seconds,
                 train_seconds=train_seconds,
                 total_train_seconds=run.earlier_seconds + train_seconds,
                 chars_per_second=chars_per_second, val=run.val)


def finish(runs: Sequence[Run], summaries: Sequence[Summary], corpus: data.Corpus,
           net: model.Model, texts: _Texts | None = None) -> None:
  """Every run's best_passage.txt, loss.png and report.md (the writing process only).

  Each file is written whole or not at all; a full disk is a paragraph, and a
  rerun of the finished run writes what is missing.
  """
  try:
    _finish(runs, summaries, corpus, net, texts)
  except OSError as e:
    raise errors.UserError(
        f"Could not write the run's outputs in {runs[0].workdir!r} ({e.strerror or e}); the "
        "checkpoints are saved. Free some space and run the same command again: it writes the "
        "missing outputs.") from None


def _finish(runs, summaries, corpus, net, texts) -> None:
  texts = texts or _Texts(net, corpus, runs[0].config)
  tables: dict[Any, tuple[str | None, str]] = {}
  for run, summary in zip(runs, summaries):
    config = run.config
    if summary.best_step >= 0:
      report.write_passage(run.workdir, texts.sample(summary.state, summary.best_step,
                                                     config.passage_length, best=True))
    rows = report.read_metrics(run.workdir)
    report.plot_loss(
        run.workdir, rows, f"{os.path.basename(corpus.source)}\n{net.describe()}; "
        f"{config.optimizer} lr={config.learning_rate:g}; B = {config.batch_size} stream(s) of "
        f"T = {config.seq_length}, {config.loss_reduction} loss",
        per_update_chars=(1 if config.loss_reduction == "mean"
                          else config.seq_length * config.batch_size),
        steps_per_epoch=corpus.steps_per_epoch, smoothing=config.smoothing)
    # The gradient check depends on the shapes and the seed, not on the learning rate.
    key = (config.seed, config.report_gradcheck_entries)
    if key not in tables:
      tables[key] = _gradcheck_table(config, corpus)
    table, note = tables[key]
    if summary.diverged_at is not None:
      status = f"diverged at update {summary.diverged_at}"
    else:
      status = "interrupted" if summary.interrupted else "finished"
    report.write_report(run.workdir, config, report.RunFacts(
        source=corpus.source, num_chars=len(corpus.text), vocab_size=corpus.vocab.size,
        model=net.describe(), num_params=model.param_count(summary.state.params),
        steps_per_epoch=corpus.steps_per_epoch, total_steps=summary.total_steps,
        steps_done=summary.steps_done, first_logged=rows[0] if rows else None,
        final_smooth_loss=summary.final_smooth_loss, best_loss=summary.best_loss,
        best_step=summary.best_step, best_metric=config.best_metric,
        compile_seconds=summary.compile_seconds, train_seconds=summary.train_seconds,
        total_train_seconds=summary.total_train_seconds,
        chars_per_second=summary.chars_per_second, status=status, gradcheck_table=table,
        gradcheck_note=note, val_chars=len(corpus.val_ids),
        val_bpc=None if summary.val is None else summary.val.bits_per_char,
        val_nats=None if summary.val is None else summary.val.nats_per_char))


def _gradcheck_table(config: TrainConfig, corpus: data.Corpus) -> tuple[str | None, str]:
  if not config.report_gradcheck_entries:
    return None, ""
  # One stream: the gradients of B streams are the sum of theirs, and B copies of a large
  # network's activations per perturbed loss would make the check the run's slowest part.
  rows = gradcheck.check_text(corpus.text, corpus.vocab, config.replace(batch_size=1),
                              entries=config.report_gradcheck_entries)
  return gradcheck.format_table(rows, 1e-6, markdown=True), ""
