"""The one host loop: `python -m jax_charrnn.train` and `python -m jax_charrnn.sweep` both run it.

The updates run on the device, up to --steps_per_call of them per jitted call
(loop.py). Between calls the host only decides what is due. `drive` is a few
named phases over one explicit state, `Loop`:

  start      the first samples; checkpoint managers
  advance    run updates up to the next event, on the device
  diverged?  a loss that became NaN or exploded (divergence.py) stops a lone run
  record     every update's losses to losses.f32
  due        the held-out score, progress lines and metrics rows, samples
  save       checkpoints (and the metrics rows kept until then)
  stop       Ctrl-C / SIGTERM: saved first, then stopped
  finish     each run's summary; the best passage, loss.png and report.md

It drives one run or many at once (a sweep's vmapped program) through the same
`Program` interface, so every run, alone or in a sweep, writes the same files
and stops and resumes the same way.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from jax_charrnn import (board, checkpoint, data, divergence, errors, loop, model, outputs,
                         parallel, report)
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console, Interrupts
from jax_charrnn.outputs import Summary
from jax_charrnn.score import Score, score_ids


class Diverged(errors.UserError):
  """The loss became NaN or infinite, or exploded (divergence.py)."""


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

  def freeze(self, r: int) -> None:
    """Stops run r's training while the others go on (a sweep's diverged run)."""


@dataclasses.dataclass
class Run:
  """One run's place on disk and what the host keeps about it between device calls."""

  name: str                     # how progress lines and the sweep's summary call it
  workdir: str
  config: TrainConfig
  earlier_seconds: float = 0.0  # training time of earlier sessions (from the checkpoint)
  rows: list = dataclasses.field(default_factory=list)  # metrics rows not yet written
  diverged_at: int | None = None
  val: Score | None = None      # the latest held-out score
  first_loss: float | None = None  # the run's first chunk loss (the divergence yardstick)
  grads: list = dataclasses.field(default_factory=list)  # [[from step, method], ...]: how its
  # gradients were computed, by the update they took over after (empty: config.grad throughout)


def grad_history(run: Run) -> list[list]:
  """[[s, method], ...]: updates s+1 up to the next entry's s used `method` (--grad)."""
  return [list(g) for g in run.grads] or [[0, run.config.grad]]


def resume_grads(run: Run, meta: dict, start: int) -> str | None:
  """Sets `run.grads` from its checkpoint's record and this session's --grad (taking over
  after update `start`); returns a note for the person when the method changes."""
  saved = meta.get("grads") or [[0, meta.get("config", {}).get("grad", run.config.grad)]]
  run.grads = [list(g) for g in saved]
  if run.grads[-1][1] == run.config.grad:
    return None
  run.grads.append([start, run.config.grad])
  return (f"Updates 1-{start:,} of this run used {saved[-1][1]} gradients; from update "
          f"{start + 1:,} on it uses {run.config.grad} (the checkpoint and report.md record both).")


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
      "num_chars": len(corpus.text), "text": data.fingerprint(corpus.text),
      "train_seconds": train_seconds,
  }


def score(net: model.Model, state: loop.TrainState, corpus: data.Corpus) -> Score:
  """The held-out tail's score under the state's current parameters (host copies: every
  process computes the same number without a collective)."""
  return score_ids(net, parallel.tree_to_host(state.params), corpus.val_ids)


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
      else f"{seconds // 60}m{seconds % 60:02d}s"


# ---- the loop's state and its phases ----

@dataclasses.dataclass
class Loop:
  """Everything the phases of `drive` share; each phase reads and writes only this."""

  program: Program
  runs: Sequence[Run]
  corpus: data.Corpus
  net: model.Model
  console: Console
  config: TrainConfig         # the settings the runs share (the host loop's are the same)
  total: int
  stop_on_divergence: bool    # a lone run stops; a sweep reports the run and goes on
  step: int
  start_step: int
  texts: outputs.Texts
  writer: bool                # this process writes the files (process 0)
  managers: list = dataclasses.field(default_factory=list)
  boards: list = dataclasses.field(default_factory=list)  # TensorBoard writers (--tensorboard)
  train_seconds: float = 0.0  # this session's time on the device
  interval: tuple[float, int] = (0.0, 0)  # (when, step) of the last progress line
  interrupted: bool = False
  explained: bool = False     # the note on the online loss was printed

  @property
  def sweep(self) -> bool:
    return len(self.runs) > 1

  @property
  def chars_per_step(self) -> int:
    return self.config.seq_length * self.config.batch_size


def start(program: Program, runs: Sequence[Run], corpus: data.Corpus, net: model.Model, *,
          start_step: int, total: int, console: Console, stop_on_divergence: bool) -> Loop:
  """The loop's state at `start_step`; a fresh run's first sample (before any update)."""
  config = runs[0].config
  lp = Loop(program=program, runs=runs, corpus=corpus, net=net, console=console, config=config,
            total=total, stop_on_divergence=stop_on_divergence, step=start_step,
            start_step=start_step, texts=outputs.Texts(net, corpus, config),
            writer=parallel.is_primary())
  if start_step == 0 and lp.writer:
    for r, run in enumerate(runs):
      report.append_sample(run.workdir, 0, lp.texts.sample(program.state_of(r), 0,
                                                           config.sample_length), None)
  lp.managers = [checkpoint.make_manager(run.workdir) for run in runs]
  if config.tensorboard and lp.writer:
    lp.boards = [board.Board(run.workdir, start_step) for run in runs]
  lp.interval = (time.perf_counter(), start_step)  # the speed counts training, not the above
  return lp


def advance(lp: Loop) -> tuple[np.ndarray, np.ndarray]:
  """Runs the updates up to the next event; (losses, smooth losses) [R, n]."""
  n = next_event(lp.step, lp.total, lp.config)
  t = time.perf_counter()
  losses, smooths = lp.program.advance(n - lp.step)  # waits for the device
  lp.train_seconds += time.perf_counter() - t
  return losses, smooths


def check_divergence(lp: Loop, losses: np.ndarray, smooths: np.ndarray) -> None:
  """Marks runs whose loss diverged in these updates; a lone run stops (Diverged)."""
  for r, run in enumerate(lp.runs):
    if run.first_loss is None and np.isfinite(losses[r, 0]):
      run.first_loss = float(losses[r, 0])
    bad = np.flatnonzero(divergence.diverged(losses[r], smooths[r], run.first_loss,
                                             lp.config.max_loss_ratio))
    if not bad.size or run.diverged_at is not None:
      continue
    run.diverged_at = lp.step + int(bad[0]) + 1
    what = divergence.describe(losses[r][bad[0]], smooths[r][bad[0]], run.first_loss,
                               lp.config.max_loss_ratio)
    if not lp.stop_on_divergence:
      lp.program.freeze(r)
      lp.console.warn(f"Run {run.name} diverged at update {run.diverged_at} ({what}); it stops "
                      "there, its best parameters kept, and the others go on.")
      continue
    if lp.writer:
      report.append_metrics(run.workdir, run.rows)
    last = lp.managers[r].latest_step()
    raise Diverged(
        f"{what[0].upper()}{what[1:]} at update {run.diverged_at} (epoch "
        f"{(run.diverged_at - 1) // lp.corpus.steps_per_epoch + 1}); training stopped. The last "
        f"good checkpoint is {'step %d' % last if last is not None else 'none'} in "
        f"{run.workdir!r}. Lower --learning_rate or --clip (with --overwrite, or in another "
        "--workdir), or check the data.")


def record(lp: Loop, losses: np.ndarray, smooths: np.ndarray) -> None:
  """Every update's losses, appended to each run's losses.f32."""
  if lp.writer:
    for r, run in enumerate(lp.runs):
      report.append_step_losses(run.workdir, losses[r], smooths[r])


def evaluate_due(lp: Loop) -> list[Score | None]:
  """The held-out score of every live run when due (and at the end); keeps a better best copy
  when the best metric is the held-out score."""
  config, scores = lp.config, [None] * len(lp.runs)
  if not config.val_fraction or not (due(lp.step, config.eval_every) or lp.step == lp.total):
    return scores
  for r, run in enumerate(lp.runs):
    if run.diverged_at is None:
      state = lp.program.state_of(r)
      scores[r] = run.val = score(lp.net, state, lp.corpus)
      if (config.best_metric == "val_bpc" and
          scores[r].bits_per_char < float(parallel.to_host(state.best_loss))):
        lp.program.keep_best(r, scores[r].bits_per_char, lp.corpus.next_chars(lp.step))
  return scores


def log_due(lp: Loop, losses: np.ndarray, smooths: np.ndarray,
            scores: list[Score | None]) -> None:
  """A metrics row per run and a progress line, when due (and at the end, and with a score)."""
  config, step = lp.config, lp.step
  evaluated = any(s is not None for s in scores)
  if not (due(step, config.log_every) or step == lp.total or evaluated):
    return
  now = time.perf_counter()
  speed = (step - lp.interval[1]) * lp.chars_per_step / max(now - lp.interval[0], 1e-9)
  lp.interval = (now, step)
  rates = lp.program.learning_rates()
  per_char = 1 if config.loss_reduction == "mean" else lp.chars_per_step
  for r, run in enumerate(lp.runs):
    run.rows.append({
        "step": step, "epoch": step / lp.corpus.steps_per_epoch,
        "loss": float(losses[r, -1]), "smooth_loss": float(smooths[r, -1]),
        "loss_per_char": float(losses[r, -1]) / per_char,
        "smooth_loss_per_char": float(smooths[r, -1]) / per_char,
        "learning_rate": float(str(np.float32(rates[r]))),
        "chars_per_s": speed, "wall_time": time.time(),
    })
    if scores[r] is not None:
      run.rows[-1].update(val_bpc=scores[r].bits_per_char,
                          val_loss_per_char=scores[r].nats_per_char)
    if lp.boards:
      lp.boards[r].scalars(step, run.rows[-1])
  eta = (lp.total - step) * lp.chars_per_step / max(speed, 1e-9)
  where = (f"step {step}/{lp.total} (epoch {step / lp.corpus.steps_per_epoch:.2f}, "
           f"{100 * step / lp.total:.1f}%)")
  if lp.sweep:
    now_losses = "  ".join(f"{run.name} {smooths[r, -1]:.3f}" for r, run in enumerate(lp.runs))
    lp.console.say(f"{where}  smooth loss: {now_losses}  {speed * len(lp.runs):,.0f} chars/s  "
                   f"ETA {_hms(eta)}")
  else:
    lp.console.say(f"{where}  loss {losses[0, -1]:.3f}  smooth {smooths[0, -1]:.3f}  "
                   f"{speed:,.0f} chars/s  ETA {_hms(eta)}")
  if evaluated:
    lp.console.say(f"held-out at step {step}: " + "  ".join(
        f"{'' if not lp.sweep else run.name + ' '}{s.bits_per_char:.4f} bits/char "
        f"({s.nats_per_char:.4f} nats/char)" for run, s in zip(lp.runs, scores)
        if s is not None))
    _explain_online_loss(lp, smooths, scores, per_char)


def _explain_online_loss(lp: Loop, smooths: np.ndarray, scores: list[Score | None],
                         per_char: int) -> None:
  """Once per session: why the held-out score can be far above the loss the run prints."""
  gaps = [s.nats_per_char > 1.5 * smooths[r, -1] / per_char
          for r, s in enumerate(scores) if s is not None]
  if lp.explained or not any(gaps):
    return
  lp.explained = True
  lp.console.say(
      "note: the held-out score is far above the smooth loss per character. The loss is "
      "online: each chunk is scored just before the update that learns from it, by weights the "
      "updates before it adapted to the text just before it. The held-out score is the fixed "
      "parameters' on text they never saw. Early in a run (large AdaGrad steps) they can differ "
      "by several bits; report.md says more.")


def sample_due(lp: Loop, smooths: np.ndarray) -> None:
  """A sample on the console (a lone run) and in samples.txt, when due."""
  log_sample = due(lp.step, lp.config.sample_every) and not lp.sweep
  keep_sample = due(lp.step, lp.config.report_every)
  if not lp.writer or not (log_sample or keep_sample):
    return
  for r, run in enumerate(lp.runs):  # one text serves both when both are due
    if run.diverged_at is not None:
      continue
    text = lp.texts.sample(lp.program.state_of(r), lp.step, lp.config.sample_length)
    if log_sample:
      lp.console.say(f"sample at step {lp.step}:\n{text}")
    if keep_sample:
      report.append_sample(run.workdir, lp.step, text, float(smooths[r, -1]))
    if lp.boards:
      lp.boards[r].text(lp.step, text)


def save(lp: Loop) -> None:
  """Every run's metrics rows so far and a checkpoint at the current step."""
  for r, run in enumerate(lp.runs):
    if lp.writer:
      report.append_metrics(run.workdir, run.rows)
    run.rows = []
    state = lp.program.state_of(r)
    # Every process takes part; orbax coordinates who writes what.
    meta = checkpoint_meta(run.config, lp.corpus, state, lp.step,
                           run.earlier_seconds + lp.train_seconds)
    meta.update(diverged_at=run.diverged_at, first_loss=run.first_loss, grads=grad_history(run),
                val_bpc=None if run.val is None else run.val.bits_per_char)
    if lp.boards:
      lp.boards[r].flush()
    try:
      checkpoint.save(lp.managers[r], lp.step, state, meta)
    except Exception as e:  # pylint: disable=broad-except
      if not _disk_error(e):
        raise
      raise _save_failed(run, lp.step, e) from None


def close(lp: Loop) -> None:
  """Waits for the checkpoints being written (a full disk becomes a paragraph here)."""
  for b in lp.boards:
    b.close()
  for run, manager in zip(lp.runs, lp.managers):
    try:
      manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (orbax wraps the OSError)
      raise _save_failed(run, lp.step, e) from None
    finally:
      manager.close()


def finish(lp: Loop, stop: Callable[[], bool] | None = None) -> list[Summary]:
  """Each run's summary; on the writing process, its best passage, loss.png and report.md.

  stop: once true, the report's gradient check (minutes for a large network) is
  skipped; everything else is written.
  """
  speed = (lp.step - lp.start_step) * lp.chars_per_step / max(lp.train_seconds, 1e-9)
  summaries = [summarize(run, lp.program.state_of(r), lp.step, lp.total,
                         interrupted=lp.interrupted, compile_seconds=lp.program.compile_seconds,
                         train_seconds=lp.train_seconds, chars_per_second=speed)
               for r, run in enumerate(lp.runs)]
  if lp.writer:
    lp.console.say("Writing the report (loss plot, best passage"
                   f"{', gradient check' if lp.config.report_gradcheck_entries else ''})...")
    outputs.finish(summaries, lp.corpus, lp.net, lp.texts, stop, lp.console.say)
  return summaries


def drive(program: Program, runs: Sequence[Run], corpus: data.Corpus, net: model.Model, *,
          start_step: int, total: int, console: Console, stop_on_divergence: bool) -> list[Summary]:
  """Trains every run from `start_step` to `total`, writing their files (the module docstring
  lists the phases).

  Args:
    program: the compiled program, its state at `start_step`.
    runs: one Run per run of the program, in its order.
    corpus: the text they train on.
    net: the network (for samples and the held-out score).
    start_step, total: where the runs are and where they stop.
    console: where progress goes.
    stop_on_divergence: raise `Diverged` when a run's loss diverges (a lone
      run); otherwise that run is reported and the others go on (a sweep).

  Returns:
    One Summary per run.
  """
  lp = start(program, runs, corpus, net, start_step=start_step, total=total, console=console,
             stop_on_divergence=stop_on_divergence)
  # The signal handler stays for the whole of it: a signal during the final save or the
  # report is acknowledged, never a KeyboardInterrupt that cuts the save short.
  with Interrupts(console) as interrupts:
    try:
      while lp.step < total:
        losses, smooths = advance(lp)
        check_divergence(lp, losses, smooths)
        lp.step += losses.shape[1]
        stop = parallel.any_process(interrupts.signal is not None)
        record(lp, losses, smooths)
        log_due(lp, losses, smooths, evaluate_due(lp))
        sample_due(lp, smooths)
        if due(lp.step, lp.config.checkpoint_every) or lp.step == total or stop:
          save(lp)
        if stop:
          lp.interrupted = True
          break
    finally:
      close(lp)
    # The state is saved: a signal from here on only skips the report's gradient check.
    interrupts.doing = "the state is saved; skipping the report's gradient check."
    interrupts.again = "already skipping the report's gradient check."
    return finish(lp, stop=lambda: interrupts.signal is not None)


def summarize(run: Run, state: loop.TrainState, steps_done: int, total: int, *,
              interrupted: bool, compile_seconds: float, train_seconds: float,
              chars_per_second: float) -> Summary:
  return Summary(name=run.name, workdir=run.workdir, config=run.config, state=state,
                 steps_done=steps_done, total_steps=total,
                 final_smooth_loss=float(parallel.to_host(state.smooth_loss)),
                 best_loss=float(parallel.to_host(state.best_loss)),
                 best_step=int(parallel.to_host(state.best_step)), interrupted=interrupted,
                 diverged_at=run.diverged_at, compile_seconds=compile_seconds,
                 train_seconds=train_seconds,
                 total_train_seconds=run.earlier_seconds + train_seconds,
                 chars_per_second=chars_per_second, val=run.val, grads=grad_history(run))


def finish_without_training(runs: Sequence[Run], states: Sequence[loop.TrainState],
                            corpus: data.Corpus, net: model.Model, total: int,
                            console: Console) -> list[Summary]:
  """A finished run asked to train no further: rewrites its outputs if missing or stale."""
  summaries = [summarize(run, state, int(parallel.to_host(state.step)), total,
                         interrupted=False, compile_seconds=0.0, train_seconds=0.0,
                         chars_per_second=0.0) for run, state in zip(runs, states)]
  step = summaries[0].steps_done
  stale = [run for run in runs if not report.outputs_current(run.workdir)]
  if stale and runs[0].config.val_fraction:
    for run, summary, state in zip(runs, summaries, states):
      run.val = summary.val = score(net, state, corpus)
  if stale and parallel.is_primary():
    console.say(f"The run has already made {step} updates ({total} asked for); writing its "
                "missing or outdated outputs...")
    outputs.finish(summaries, corpus, net, say=console.say)
  else:
    console.warn(f"The run in {runs[0].workdir if len(runs) == 1 else 'this sweep'} has already "
                 f"made {step} updates ({total} asked for): nothing to do. Raise --num_steps or "
                 "--epochs to train it further.")
  return summaries


# ---- saving errors ----

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
