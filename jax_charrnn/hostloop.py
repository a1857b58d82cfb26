"""The one host loop: `python -m jax_charrnn.train` and `python -m jax_charrnn.sweep` both run it.

The updates run on the device, up to --steps_per_call of them per jitted call
(loop.py). Between calls the host only decides what is due. `drive` is a few
named phases over one explicit state, `Session`:

  start      the first samples; checkpoint managers (and TensorBoard writers)
  advance    run updates up to the next event, on the device
  diverged?  a loss that became NaN or exploded (divergence.py) stops a lone run;
             a sweep's run is frozen and the others go on
  losses     every update's losses to losses.f32
  due        the held-out score, progress lines and metrics rows, samples
  save       checkpoints (each run's state and record) and the metrics rows kept until then
  stop       Ctrl-C / SIGTERM: saved first, then stopped
  finish     each run's record completed; the best passage, loss.png and report.md

It drives one run or many at once (a sweep's vmapped program) through the same
`programs.Program`, so every run, alone or in a sweep, writes the same files and
stops and resumes the same way. Each run's `record.RunRecord` is the one account
of it: the checkpoints save it, and the report and the last line are written
from it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from jax_charrnn import (board, checkpoint, divergence, errors, finish, loop, model, parallel,
                         runfiles, walk)
from jax_charrnn.config import TrainConfig
from jax_charrnn.console import Console, Interrupts
from jax_charrnn.generate import Sampler
from jax_charrnn.programs import Program
from jax_charrnn.record import RunRecord
from jax_charrnn.score import Score, score_ids


class Diverged(errors.UserError):
  """The loss became NaN or infinite, or exploded (divergence.py)."""


@dataclasses.dataclass(frozen=True)
class Context:
  """What every phase reads and none changes: the text, the network, the shared settings."""

  corpus: walk.Corpus
  net: model.Model
  config: TrainConfig        # the settings the runs share (a sweep's differ in rate and seed)
  console: Console
  freeze_diverged: bool      # a sweep's diverged run is frozen; a lone run's stops the command
  writer: bool = dataclasses.field(default_factory=parallel.is_primary)  # process 0 writes

  @property
  def sampler(self) -> Sampler:
    return Sampler(self.net, self.corpus, self.config.temperature)

  @property
  def chars_per_step(self) -> int:
    return self.config.seq_length * self.config.batch_size


@dataclasses.dataclass
class LiveRun:
  """A run as the loop drives it: its record, and what the loop holds open for it."""

  record: RunRecord
  manager: Any = None              # its orbax CheckpointManager
  board: board.Board | None = None  # its TensorBoard writer (--tensorboard)
  rows: list = dataclasses.field(default_factory=list)  # metrics rows not yet written


@dataclasses.dataclass
class Session:
  """The host loop's state between device calls."""

  context: Context
  program: Program
  runs: list[LiveRun]
  step: int
  clock: tuple[float, int] = (0.0, 0)  # (when, step) of the last progress line
  interrupted: bool = False
  explained: bool = False              # the note on the online loss was printed

  @property
  def total(self) -> int:
    return self.runs[0].record.total

  @property
  def several(self) -> bool:
    """More than one run: the console shows them side by side, without samples."""
    return len(self.runs) > 1


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


def held_out_score(net: model.Model, state: loop.TrainState, corpus: walk.Corpus,
                   streams: int = 1) -> Score:
  """The held-out tail's score under the state's current parameters, in `streams` segments
  (--eval_streams; score.py); host copies: every process computes the same number without a
  collective."""
  return score_ids(net.full_precision(), parallel.tree_to_host(state.params), corpus.val_ids,
                   streams=streams)


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
      else f"{seconds // 60}m{seconds % 60:02d}s"


# ---- the phases ----

def start(program: Program, records: Sequence[RunRecord], context: Context) -> Session:
  """The loop's state at the records' step; a fresh run's first sample (before any update)."""
  step = records[0].step
  session = Session(context, program, [LiveRun(r) for r in records], step)
  config = context.config
  for r, run in enumerate(session.runs):
    run.record.timing.compile = program.compile_seconds
    if config.tensorboard and context.writer:
      run.board = board.Board(run.record.workdir, step)
    if step == 0 and context.writer:
      text = context.sampler.text(program.state_of(r), 0, config.sample_length)
      runfiles.append_sample(run.record.workdir, 0, text, None)
      if run.board:
        run.board.text(0, text)
    run.manager = checkpoint.make_manager(run.record.workdir)
  session.clock = (time.perf_counter(), step)  # the speed counts training, not the above
  return session


def advance(session: Session) -> tuple[np.ndarray, np.ndarray]:
  """Runs the updates up to the next event; (losses, smooth losses) [R, n]."""
  n = next_event(session.step, session.total, session.context.config)
  t = time.perf_counter()
  losses, smooths = session.program.advance(n - session.step)  # waits for the device
  seconds = time.perf_counter() - t
  for run in session.runs:
    run.record.timing.session += seconds
  return losses, smooths


def check_divergence(session: Session, losses: np.ndarray, smooths: np.ndarray) -> None:
  """Marks runs whose loss diverged in these updates: a sweep's run is frozen, a lone run
  stops the command (Diverged)."""
  ratio = session.context.config.max_loss_ratio
  for r, run in enumerate(session.runs):
    record = run.record
    if record.first_loss is None and np.isfinite(losses[r, 0]):
      record.first_loss = float(losses[r, 0])
    bad = np.flatnonzero(divergence.diverged(losses[r], smooths[r], record.first_loss, ratio))
    if not bad.size or record.diverged_at is not None:
      continue
    record.diverged_at = session.step + int(bad[0]) + 1
    what = divergence.describe(losses[r][bad[0]], smooths[r][bad[0]], record.first_loss, ratio)
    if session.context.freeze_diverged:
      session.program.freeze(r)
      session.context.console.warn(
          f"Run {record.name} diverged at update {record.diverged_at} ({what}); it stops "
          "there, its best parameters kept, and the others go on.")
      continue
    raise _diverged(session, run, what)


def _diverged(session: Session, run: LiveRun, what: str) -> Diverged:
  """The paragraph of a lone run that diverged (its metrics rows so far written first)."""
  record = run.record
  if session.context.writer:
    runfiles.append_metrics(record.workdir, run.rows)
  last = run.manager.latest_step()
  epoch = (record.diverged_at - 1) // session.context.corpus.steps_per_epoch + 1
  return Diverged(
      f"{what[0].upper()}{what[1:]} at update {record.diverged_at} (epoch {epoch}); training "
      f"stopped. The last good checkpoint is {'step %d' % last if last is not None else 'none'} "
      f"in {record.workdir!r}. Lower --learning_rate or --clip (with --overwrite, or in another "
      "--workdir), or check the data.")


def write_losses(session: Session, losses: np.ndarray, smooths: np.ndarray) -> None:
  """Every update's losses, appended to each run's losses.f32."""
  if session.context.writer:
    for r, run in enumerate(session.runs):
      runfiles.append_step_losses(run.record.workdir, losses[r], smooths[r])


def evaluate_due(session: Session) -> list[Score | None]:
  """The held-out score of every live run when due (and at the end); keeps a better best copy
  when the best metric is the held-out score."""
  context, scores = session.context, [None] * len(session.runs)
  config = context.config
  if not config.val_fraction or not (due(session.step, config.eval_every)
                                     or session.step == session.total):
    return scores
  start = time.perf_counter()
  for r, run in enumerate(session.runs):
    if run.record.diverged_at is None:
      state = session.program.state_of(r)
      scores[r] = run.record.held_out = held_out_score(context.net, state, context.corpus,
                                                       config.eval_streams)
      if (config.best_metric == "val_bpc" and
          scores[r].bits_per_char < float(parallel.to_host(state.best_loss))):
        session.program.keep_best(r, scores[r].bits_per_char,
                                  context.corpus.next_chars(session.step))
  when, step = session.clock  # the progress line's speed counts training, not scoring
  session.clock = (when + time.perf_counter() - start, step)
  return scores


def log_due(session: Session, losses: np.ndarray, smooths: np.ndarray,
            scores: list[Score | None]) -> None:
  """A metrics row per run and a progress line, when due (and at the end, and with a score)."""
  config, step = session.context.config, session.step
  evaluated = any(s is not None for s in scores)
  if not (due(step, config.log_every) or step == session.total or evaluated):
    return
  now = time.perf_counter()
  speed = ((step - session.clock[1]) * session.context.chars_per_step
           / max(now - session.clock[0], 1e-9))
  session.clock = (now, step)
  rates = session.program.learning_rates()
  per_char = config.chars_per_loss
  for r, run in enumerate(session.runs):
    row = _metrics_row(session, losses[r, -1], smooths[r, -1], rates[r], speed, per_char)
    if scores[r] is not None:
      row.update(val_bpc=scores[r].bits_per_char, val_loss_per_char=scores[r].nats_per_char)
    run.rows.append(row)
    if run.board:
      run.board.scalars(step, row)
  _progress_lines(session, losses, smooths, scores, speed)
  if evaluated:
    _explain_online_loss(session, smooths, scores, per_char)


def _metrics_row(session: Session, loss: float, smooth: float, rate: float, speed: float,
                 per_char: int) -> dict:
  """One run's metrics.jsonl row at the session's step."""
  step = session.step
  return {"step": step, "epoch": step / session.context.corpus.steps_per_epoch,
          "loss": float(loss), "smooth_loss": float(smooth),
          "loss_per_char": float(loss) / per_char, "smooth_loss_per_char": float(smooth) / per_char,
          "learning_rate": float(str(np.float32(rate))), "chars_per_s": speed,
          "wall_time": time.time()}


def _progress_lines(session: Session, losses: np.ndarray, smooths: np.ndarray,
                    scores: list[Score | None], speed: float) -> None:
  """The console's progress line (and the held-out line, when scores came)."""
  context, step, total = session.context, session.step, session.total
  eta = (total - step) * context.chars_per_step / max(speed, 1e-9)
  where = (f"step {step}/{total} (epoch {step / context.corpus.steps_per_epoch:.2f}, "
           f"{100 * step / total:.1f}%)")
  if session.several:  # one line for all runs
    now_losses = "  ".join(f"{run.record.name} {smooths[r, -1]:.3f}"
                           for r, run in enumerate(session.runs))
    context.console.say(f"{where}  smooth loss: {now_losses}  "
                        f"{speed * len(session.runs):,.0f} chars/s  ETA {_hms(eta)}")
  else:
    context.console.say(f"{where}  loss {losses[0, -1]:.3f}  smooth {smooths[0, -1]:.3f}  "
                        f"{speed:,.0f} chars/s  ETA {_hms(eta)}")
  if any(s is not None for s in scores):
    context.console.say(f"held-out at step {step}: " + "  ".join(
        f"{run.record.name + ' ' if session.several else ''}{s.bits_per_char:.4f} bits/char "
        f"({s.nats_per_char:.4f} nats/char)" for run, s in zip(session.runs, scores)
        if s is not None))


def _explain_online_loss(session: Session, smooths: np.ndarray, scores: list[Score | None],
                         per_char: int) -> None:
  """Once per session: why the held-out score can be far above the loss the run prints."""
  gaps = [s.nats_per_char > 1.5 * smooths[r, -1] / per_char
          for r, s in enumerate(scores) if s is not None]
  if session.explained or not any(gaps):
    return
  session.explained = True
  session.context.console.say(
      "note: the held-out score is far above the smooth loss per character. The loss is "
      "online: each chunk is scored just before the update that learns from it, by weights the "
      "updates before it adapted to the text just before it. The held-out score is the fixed "
      "parameters' on text they never saw. Early in a run (large AdaGrad steps) they can differ "
      "by several bits; report.md says more.")


def sample_due(session: Session, smooths: np.ndarray) -> None:
  """A sample on the console (a lone run) and in samples.txt, when due."""
  context, step = session.context, session.step
  log_sample = due(step, context.config.sample_every) and not session.several
  keep_sample = due(step, context.config.report_every)
  if not context.writer or not (log_sample or keep_sample):
    return
  for r, run in enumerate(session.runs):  # one text serves both when both are due
    if run.record.diverged_at is not None:
      continue
    text = context.sampler.text(session.program.state_of(r), step, context.config.sample_length)
    if log_sample:
      context.console.say(f"sample at step {step}:\n{text}")
    if keep_sample:
      runfiles.append_sample(run.record.workdir, step, text, float(smooths[r, -1]))
    if run.board:
      run.board.text(step, text)


def save(session: Session) -> None:
  """Every run's metrics rows so far, and a checkpoint of its state and record at this step."""
  for r, run in enumerate(session.runs):
    if session.context.writer:
      runfiles.append_metrics(run.record.workdir, run.rows)
    run.rows = []
    state = session.program.state_of(r)
    run.record.observe(state)
    if run.board:
      run.board.flush()
    try:  # every process takes part; orbax coordinates who writes what
      checkpoint.save(run.manager, session.step, state,
                      run.record.to_meta(session.context.corpus))
    except Exception as e:  # pylint: disable=broad-except
      if not _disk_error(e):
        raise
      raise _save_failed(run.record.workdir, session.step, e) from None


def close(session: Session) -> None:
  """Waits for the checkpoints being written (a full disk becomes a paragraph here)."""
  for run in session.runs:
    if run.board:
      run.board.close()
    try:
      run.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (orbax wraps the OSError)
      raise _save_failed(run.record.workdir, session.step, e) from None
    finally:
      run.manager.close()


def complete(session: Session, stop: Callable[[], bool] | None = None) -> list[RunRecord]:
  """Each run's record, completed from its state; on the writing process, its best passage,
  loss.png and report.md (finish.py).

  stop: once true, the report's gradient check (minutes for a large network) is
  skipped; everything else is written.
  """
  context = session.context
  states = [session.program.state_of(r) for r in range(len(session.runs))]
  for run, state in zip(session.runs, states):
    run.record.observe(state)
    run.record.interrupted = session.interrupted
  records = [run.record for run in session.runs]
  if context.writer:
    context.console.say("Writing the report (loss plot, best passage"
                        f"{', gradient check' if context.config.report_gradcheck_entries else ''}"
                        ")...")
    finish.write_outputs(list(zip(records, states)), context.corpus, context.net,
                         context.sampler, stop, context.console.say)
  return records


def drive(program: Program, records: Sequence[RunRecord], context: Context) -> list[RunRecord]:
  """Trains every run from the records' step to their total, writing their files (the module
  docstring lists the phases); returns the records, complete.

  Args:
    program: the compiled program, its state at the records' step.
    records: one per run of the program, in its order.
    context: the text, the network, the settings and the console they share.
  """
  session = start(program, records, context)
  # The signal handler stays for the whole of it: a signal during the final save or the
  # report is acknowledged, never a KeyboardInterrupt that cuts the save short.
  with Interrupts(context.console) as interrupts:
    try:
      while session.step < session.total:
        losses, smooths = advance(session)
        check_divergence(session, losses, smooths)
        session.step += losses.shape[1]
        stop = parallel.any_process(interrupts.signal is not None)
        write_losses(session, losses, smooths)
        log_due(session, losses, smooths, evaluate_due(session))
        sample_due(session, smooths)
        if due(session.step, context.config.checkpoint_every) or session.step == session.total \
            or stop:
          save(session)
        if stop:
          session.interrupted = True
          break
    finally:
      close(session)
    # The state is saved: a signal from here on only skips the report's gradient check.
    interrupts.doing = "the state is saved; skipping the report's gradient check."
    interrupts.again = "already skipping the report's gradient check."
    return complete(session, stop=lambda: interrupts.signal is not None)


def finish_without_training(records: Sequence[RunRecord], states: Sequence[loop.TrainState],
                            context: Context) -> list[RunRecord]:
  """Runs asked to train no further: rewrites their outputs if missing or stale."""
  stale = [r for r in records if not runfiles.outputs_current(r.workdir)]
  if stale and context.config.val_fraction:
    for record, state in zip(records, states):
      record.held_out = held_out_score(context.net, state, context.corpus,
                                       context.config.eval_streams)
  step, total = records[0].step, records[0].total
  if stale and context.writer:
    context.console.say(f"The run has already made {step} updates ({total} asked for); writing "
                        "its missing or outdated outputs...")
    finish.write_outputs(list(zip(records, states)), context.corpus, context.net,
                         context.sampler, say=context.console.say)
  else:
    context.console.warn(
        f"The run in {records[0].workdir if len(records) == 1 else 'this sweep'} has already "
        f"made {step} updates ({total} asked for): nothing to do. Raise --num_steps or "
        "--epochs to train it further.")
  return list(records)


# ---- saving errors ----

def _disk_error(e: BaseException) -> bool:
  """Whether an exception (from orbax or tensorstore, which wrap them) is a file-system error."""
  text = str(e)
  return (isinstance(e, OSError) or "No space left on device" in text
          or "os_error_code" in text or "Permission denied" in text)


def _save_failed(workdir: str, step: int, error: BaseException) -> errors.UserError:
  """The paragraph for a checkpoint that could not be written (a full disk, say)."""
  last = [s for s in checkpoint.all_steps(workdir) if s != step]
  text = str(getattr(error, "strerror", None) or error)
  reason = ("No space left on device" if "No space left on device" in text
            else " ".join(text.split())[:200])
  return errors.UserError(
      f"Could not save the checkpoint at step {step} in {workdir!r} ({reason}). The newest "
      f"complete checkpoint is {'step %d' % last[-1] if last else 'none'}; nothing older was "
      "deleted. Free some space (or fix the directory) and run the same command again to "
      "resume from it.")
