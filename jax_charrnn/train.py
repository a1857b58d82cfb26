"""Train the character-level RNN: `python -m jax_charrnn.train --flagfile=experiments/X.flags`.

The order is always the same: flags -> frozen TrainConfig -> data -> init or
restore -> the host loop. The host loop decides only when to stop, log,
sample, checkpoint; the updates themselves run on the device, up to
--steps_per_call of them per jitted call (see loop.py).

This is the only module that reads flags: `train(config, workdir)` is the
library entry point (tests call it directly).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from jax_charrnn import (checkpoint, data, errors, generate, gradcheck, loop, optim, parallel,
                         report)
from jax_charrnn.config import TrainConfig

# Settings that fix what a checkpoint means: resuming with any of them changed
# would not continue the same run.
_RUN_DEFINING = ("lowercase", "seq_length", "batch_size", "hidden_size", "init_sigma",
                 "init_dist", "seed", "dtype", "optimizer", "learning_rate", "clip", "loss_reduction",
                 "smoothing", "best_metric")


class Diverged(errors.UserError):
  """The loss became NaN or infinite."""


@dataclasses.dataclass
class Summary:
  """What `train` returns: where the run ended and how it went."""

  state: loop.TrainState
  steps_done: int
  total_steps: int
  final_smooth_loss: float
  best_loss: float
  best_step: int
  interrupted: bool
  compile_seconds: float
  train_seconds: float
  chars_per_second: float


class _Interrupts:
  """Turns SIGINT/SIGTERM into a flag the host loop checks between device calls."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:  # a second Ctrl-C: stop now
      raise KeyboardInterrupt
    self.signal = signum
    logging.warning("Received %s: saving the state after the current device call, then stopping.",
                    signal.Signals(signum).name)

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


def _check_workdir(workdir: str) -> None:
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


def _fingerprint(text: str) -> str:
  return f"{len(text)}:{zlib.crc32(text.encode('utf-8')):08x}"


def _differences(meta: dict, config: TrainConfig, vocab: data.Vocab, text: str) -> list[str]:
  """What differs between the run saved in a checkpoint and the one asked for."""
  diffs = []
  saved = meta.get("config", {})
  saved_vocab = meta.get("vocab", "")
  if meta.get("text") != _fingerprint(text):
    diffs.append(f"the text ({meta.get('num_chars', '?')} characters saved from "
                 f"{meta.get('source', '?')!r}; {len(text)} characters now, or other content)")
  if saved_vocab != vocab.to_json():
    old = data.Vocab.from_json(saved_vocab).size if saved_vocab else "no"
    diffs.append(f"vocabulary ({old} characters saved, {vocab.size} in this text)")
  for name in _RUN_DEFINING:
    if name in saved and saved[name] != getattr(config, name):
      diffs.append(f"{name} ({saved[name]!r} saved, {getattr(config, name)!r} now)")
  return diffs


def next_event(step: int, total: int, config: TrainConfig) -> int:
  """The first step after `step` at which the host has something to do."""
  stop = min(total, step + config.steps_per_call)
  for every in (config.log_every, config.sample_every, config.report_every,
                config.checkpoint_every):
    if every > 0:
      stop = min(stop, (step // every + 1) * every)
  return stop


def due(step: int, every: int) -> bool:
  """Whether something done every `every` updates (0: never) is due after update `step`."""
  return every > 0 and step % every == 0


def checkpoint_meta(config: TrainConfig, d: data.Corpus, state: loop.TrainState,
                    step: int) -> dict:
  """The JSON half of a checkpoint: enough to resume, to sample, and for a person to read."""
  return {
      "vocab": d.vocab.to_json(), "config": dataclasses.asdict(config), "step": step,
      "epoch": step // d.steps_per_epoch, "position": step % d.steps_per_epoch,
      "steps_per_epoch": d.steps_per_epoch, "next_char": d.next_char(step),
      "smooth_loss": float(parallel.to_host(state.smooth_loss)),
      "best_loss": float(parallel.to_host(state.best_loss)),
      "best_step": int(parallel.to_host(state.best_step)), "source": d.source,
      "num_chars": len(d.text), "text": _fingerprint(d.text),
  }


def _start_state(config: TrainConfig, workdir: str, d: data.Corpus, shardings, *, resume: bool,
                 overwrite: bool) -> loop.TrainState:
  """A fresh state on the mesh, or the workdir's latest checkpoint when it continues this run."""
  state = parallel.put(loop.init_state(config, d.vocab.size), shardings)
  if not checkpoint.has_checkpoint(workdir):
    if parallel.is_primary():
      report.remove_outputs(workdir)
    return state
  if overwrite:
    logging.info("--overwrite: deleting the earlier run in %s.", workdir)
    if parallel.is_primary():
      checkpoint.remove_all(workdir)
      report.remove_outputs(workdir)
    return state
  if not resume:
    raise errors.UserError(
        f"The workdir {workdir!r} already holds a run. Resume it (leave --resume on), pass "
        "--overwrite to replace it, or choose another --workdir.")
  _, meta = checkpoint.read_meta(workdir)
  diffs = _differences(meta, config, d.vocab, d.text)
  if diffs:
    raise errors.UserError(
        f"The workdir {workdir!r} holds a run with other settings: {'; '.join(diffs)}. "
        "Resume it with the same settings, pass --overwrite to replace it, or choose "
        "another --workdir.")
  state, meta = checkpoint.restore(workdir, state)
  logging.info("Resumed from the checkpoint at step %d (epoch %d) in %s.", meta["step"],
               meta["epoch"], workdir)
  return state


def train(config: TrainConfig, workdir: str, *, resume: bool = True,
          overwrite: bool = False) -> Summary:
  """Trains as `config` says, writing checkpoints and reports into `workdir`.

  Runs on every device of every process (see parallel.py): the streams are
  split over the devices; only process 0 writes logs, samples and reports.

  Args:
    config: the run's settings.
    workdir: where checkpoints, metrics, plots, samples and the report go.
    resume: continue from the latest checkpoint in workdir, if there is one.
    overwrite: delete an earlier run in workdir first.

  Raises:
    UserError: bad data or settings, a workdir holding another run, a diverged loss.
  """
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)  # float64 arrays need it, for the whole process
  d = data.load_corpus(config.data_path, config.lowercase, config.seq_length, config.batch_size)
  total = config.total_steps(d.steps_per_epoch)
  chars_per_step = config.seq_length * config.batch_size
  mesh = parallel.make_mesh(config.num_devices, config.batch_size)
  logging.info("Data: %s, %d characters, K=%d; %d updates per epoch of %d x %d characters; "
               "%d updates in all, on %d %s device(s) in %d process(es).", d.source, len(d.text),
               d.vocab.size, d.steps_per_epoch, config.batch_size, config.seq_length, total,
               mesh.size, mesh.devices.flat[0].platform, jax.process_count())
  _check_workdir(workdir)
  shardings = parallel.state_shardings(
      jax.eval_shape(lambda: loop.init_state(config, d.vocab.size)), mesh)
  state = _start_state(config, workdir, d, shardings, resume=resume, overwrite=overwrite)
  start_step = int(parallel.to_host(state.step))
  if start_step >= total:
    logging.warning("The run in %s has already made %d updates (%d asked for): nothing to do. "
                    "Raise --num_steps or --epochs to train it further.", workdir, start_step,
                    total)
    return _summary(state, start_step, total, interrupted=False, compile_seconds=0.0,
                    train_seconds=0.0, chars_per_second=0.0)
  writer = parallel.is_primary()
  if writer:
    report.truncate_metrics(workdir, start_step)
    report.truncate_samples(workdir, start_step)
    report.truncate_step_losses(workdir, start_step)

  # ---- the device program, compiled once ----
  inputs, targets = parallel.put_streams(d.inputs, mesh), parallel.put_streams(d.targets, mesh)
  t0 = time.perf_counter()
  run_steps = loop.make_run_steps(config, config.steps_per_call, shardings).lower(
      state, inputs, targets, jnp.int32(1)).compile()
  compile_seconds = time.perf_counter() - t0
  logging.info("Compiled the training program (%d updates per call) in %.1f s.",
               config.steps_per_call, compile_seconds)
  base_key = jax.random.wrap_key_data(parallel.to_host(state.key))

  def text_sample(params, h, x, step, length):
    """Text from stream 0's state, on process 0 alone (host copies; no collective)."""
    key = jax.random.fold_in(base_key, step)
    return generate.generate(parallel.tree_to_host(params), d.vocab, parallel.first_row(h),
                             x, length, key, config.temperature)[0]

  def save(state, step):
    # Every process takes part; orbax coordinates who writes what.
    checkpoint.save(mngr, step, state, checkpoint_meta(config, d, state, step))

  if start_step == 0 and writer:
    report.append_sample(workdir, 0, text_sample(state.params, state.h, d.next_char(0), 0,
                                                 config.sample_length), None)

  # ---- the host loop: it only decides when to log, sample, checkpoint and stop ----
  step = start_step
  train_seconds = 0.0
  interval_start, interval_step = time.perf_counter(), step
  rows = []
  interrupted = False
  mngr = checkpoint.make_manager(workdir)
  try:
    with _Interrupts() as interrupts:
      while step < total:
        n = next_event(step, total, config)
        t = time.perf_counter()
        new_state, metrics = run_steps(state, inputs, targets, jnp.int32(n - step))
        losses = parallel.to_host(metrics.loss)[: n - step]  # waits for the device
        train_seconds += time.perf_counter() - t
        smooths = parallel.to_host(metrics.smooth_loss)[: n - step]
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
          if writer:
            report.append_metrics(workdir, rows)
          last = mngr.latest_step()
          raise Diverged(
              f"The loss became {losses[bad[0]]} at update {step + bad[0] + 1} (epoch "
              f"{(step + bad[0]) // d.steps_per_epoch + 1}); training stopped. The last good "
              f"checkpoint is {'step %d' % last if last is not None else 'none'} in {workdir!r}. "
              "Lower --learning_rate or --clip (with --overwrite, or in another --workdir), or "
              "check the data.")
        state, step = new_state, n
        stop = parallel.any_process(interrupts.signal is not None)
        if writer:
          report.append_step_losses(workdir, losses, smooths)

        if due(step, config.log_every) or step == total:
          now = time.perf_counter()
          speed = (step - interval_step) * chars_per_step / max(now - interval_start, 1e-9)
          interval_start, interval_step = now, step
          smooth = float(smooths[-1])
          rows.append({
              "step": step, "epoch": step / d.steps_per_epoch, "loss": float(losses[-1]),
              "smooth_loss": smooth,
              "loss_per_char": float(losses[-1]) / (1 if config.loss_reduction == "mean"
                                                    else chars_per_step),
              "learning_rate": float(str(np.float32(parallel.to_host(
                  optim.learning_rate(state.opt_state))))),
              "chars_per_s": speed, "wall_time": time.time(),
          })
          eta = (total - step) * chars_per_step / max(speed, 1e-9)
          logging.info("step %d/%d (epoch %.2f, %.1f%%)  loss %.3f  smooth %.3f  %s chars/s  "
                       "ETA %s", step, total, step / d.steps_per_epoch, 100 * step / total,
                       losses[-1], smooth, f"{speed:,.0f}", _hms(eta))
        log_sample, keep_sample = due(step, config.sample_every), due(step, config.report_every)
        if writer and (log_sample or keep_sample):  # one text serves both when both are due
          text = text_sample(state.params, state.h, d.next_char(step), step, config.sample_length)
          if log_sample:
            logging.info("sample at step %d:\n%s", step, text)
          if keep_sample:
            report.append_sample(workdir, step, text, float(smooths[-1]))
        if due(step, config.checkpoint_every) or step == total or stop:
          if writer:
            report.append_metrics(workdir, rows)
          rows = []
          save(state, step)
        if stop:
          interrupted = True
          logging.warning("Stopped at step %d; the state is saved. Run the same command again "
                          "to resume.", step)
          break
  finally:
    mngr.wait_until_finished()
    mngr.close()

  speed = (step - start_step) * chars_per_step / max(train_seconds, 1e-9)
  summary = _summary(state, step, total, interrupted=interrupted,
                     compile_seconds=compile_seconds, train_seconds=train_seconds,
                     chars_per_second=speed)
  if writer:
    passage = None
    if summary.best_step >= 0:
      passage = text_sample(state.best_params, state.best_h, int(parallel.first_row(state.best_x)),
                            summary.best_step, config.passage_length)
    report.append_metrics(workdir, rows)
    _write_outputs(config, workdir, d, summary, passage)
  logging.info("Done: %d updates, smooth loss %.3f, best %s %.3f at update %d; %.1f s of training "
               "(%s chars/s). Report: %s", step, summary.final_smooth_loss, config.best_metric,
               summary.best_loss, summary.best_step + 1, train_seconds, f"{speed:,.0f}",
               os.path.join(workdir, report.REPORT))
  return summary


def _summary(state: loop.TrainState, steps_done: int, total: int, **timings) -> Summary:
  return Summary(state=state, steps_done=steps_done, total_steps=total,
                 final_smooth_loss=float(parallel.to_host(state.smooth_loss)),
                 best_loss=float(parallel.to_host(state.best_loss)),
                 best_step=int(parallel.to_host(state.best_step)), **timings)


def _write_outputs(config: TrainConfig, workdir: str, d: data.Corpus, summary: Summary,
                   passage: str | None) -> None:
  """best_passage.txt, loss.png and report.md (process 0 only)."""
  if passage is not None:
    report.write_passage(workdir, passage)
  rows = report.read_metrics(workdir)
  report.plot_loss(workdir, rows, f"{os.path.basename(d.source)}: m={config.hidden_size}, "
                   f"{config.optimizer} lr={config.learning_rate}")
  table = None
  if config.report_gradcheck_entries:
    checked = gradcheck.check_text(d.text, d.vocab, hidden_size=config.hidden_size,
                                   seq_length=config.seq_length, sigma=config.init_sigma,
                                   dist=config.init_dist, seed=config.seed,
                                   reduction=config.loss_reduction,
                                   entries=config.report_gradcheck_entries)
    table = gradcheck.format_table(checked, 1e-6, markdown=True)
  report.write_report(workdir, dataclasses.asdict(config), report.RunFacts(
      source=d.source, num_chars=len(d.text), vocab_size=d.vocab.size,
      steps_per_epoch=d.steps_per_epoch, total_steps=summary.total_steps,
      steps_done=summary.steps_done, first_logged=rows[0] if rows else None,
      final_smooth_loss=summary.final_smooth_loss, best_loss=summary.best_loss,
      best_step=summary.best_step, best_metric=config.best_metric,
      compile_seconds=summary.compile_seconds, train_seconds=summary.train_seconds,
      chars_per_second=summary.chars_per_second,
      status="interrupted" if summary.interrupted else "finished", gradcheck_table=table))


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
      else f"{seconds // 60}m{seconds % 60:02d}s"


# ---- the command line ----

_d = TrainConfig()  # the defaults shown in --help are the config's
_DATA_PATH = flags.DEFINE_string(
    "data_path", _d.data_path, "UTF-8 text file to learn from. Empty (the default) means the "
    "built-in corpus: CPython's documentation text (pydoc_data.topics), no download needed.")
_LOWERCASE = flags.DEFINE_bool("lowercase", _d.lowercase, "Lowercase the text first (the "
                               "original notebook did; the handout does not).")
_HIDDEN = flags.DEFINE_integer("hidden_size", _d.hidden_size, "m, hidden units.", lower_bound=1)
_SEQ = flags.DEFINE_integer("seq_length", _d.seq_length, "T, characters per chunk (update).",
                            lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", _d.batch_size, "B streams, each walking its own "
                              "contiguous part of the book (1 = the course).", lower_bound=1)
_LR = flags.DEFINE_float("learning_rate", _d.learning_rate, "eta.", lower_bound=1e-12)
_EPOCHS = flags.DEFINE_integer("epochs", _d.epochs, "Passes over the text (ignored when "
                               "--num_steps is set).", lower_bound=0)
_NUM_STEPS = flags.DEFINE_integer("num_steps", _d.num_steps, "Total updates; 0 means --epochs "
                                  "decides.", lower_bound=0)
_CLIP = flags.DEFINE_float("clip", _d.clip, "Clip each gradient entry to [-clip, clip] before "
                           "the optimiser.", lower_bound=1e-12)
_SIGMA = flags.DEFINE_float("init_sigma", _d.init_sigma, "Scale of the random initial weights.",
                            lower_bound=0.0)
_DIST = flags.DEFINE_enum("init_dist", _d.init_dist, ["normal", "uniform"],
                          "sigma*N(0,1) (handout) or sigma*U[0,1) (original notebook).")
_SEED = flags.DEFINE_integer("seed", _d.seed, "PRNG seed (initial weights, samples).")
_DTYPE = flags.DEFINE_enum("dtype", _d.dtype, ["float32", "float64"], "Floating-point type of "
                           "the parameters and the computation (float64: slower, for studies).")
_OPT = flags.DEFINE_enum("optimizer", _d.optimizer, ["adagrad", "adam", "rmsprop"],
                         "adagrad is the course's (G += g^2; theta -= eta g / sqrt(G + 1e-8)).")
_REDUCTION = flags.DEFINE_enum("loss_reduction", _d.loss_reduction, ["sum", "mean"],
                               "Loss of a chunk: sum over characters (course) or mean.")
_GRAD = flags.DEFINE_enum("grad", _d.grad, ["manual", "autodiff"],
                          "Hand-derived BPTT or jax.grad (same results).")
_BEST = flags.DEFINE_enum("best_metric", _d.best_metric, ["smooth_loss", "loss"],
                          "Which loss picks the best parameters (the notebook used loss).")
_STEPS_PER_CALL = flags.DEFINE_integer(
    "steps_per_call", _d.steps_per_call, "Updates run inside one jitted call; the host wakes "
    "up earlier when logging, sampling or checkpointing is due. 1 = one call per update.",
    lower_bound=1)
_LOG_EVERY = flags.DEFINE_integer("log_every", _d.log_every, "Log and record metrics every N "
                                  "updates.", lower_bound=1)
_SAMPLE_EVERY = flags.DEFINE_integer("sample_every", _d.sample_every, "Log a sample every N "
                                     "updates (0: never).", lower_bound=0)
_REPORT_EVERY = flags.DEFINE_integer("report_every", _d.report_every, "Append a sample to "
                                     "samples.txt every N updates (0: only before step 1).",
                                     lower_bound=0)
_SAMPLE_LENGTH = flags.DEFINE_integer("sample_length", _d.sample_length, "Characters per "
                                      "sample.", lower_bound=1)
_PASSAGE = flags.DEFINE_integer("passage_length", _d.passage_length, "Characters in "
                                "best_passage.txt.", lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", _d.temperature, "Sampling temperature.",
                                  lower_bound=0.0)
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", _d.checkpoint_every, "Checkpoint every "
                                   "N updates (0: only at the end and on interrupts).",
                                   lower_bound=0)
_GC_ENTRIES = flags.DEFINE_integer("report_gradcheck_entries", _d.report_gradcheck_entries,
                                   "Finite-difference entries per parameter in report.md's "
                                   "gradient check (0: skip it).", lower_bound=0)
_NUM_DEVICES = flags.DEFINE_integer(
    "num_devices", _d.num_devices, "Devices to split the --batch_size streams over (data "
    "parallel; 0: all devices of all processes). The batch must be a multiple of it.",
    lower_bound=0)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "On a CPU, present it to JAX as this many devices (each runs on its own "
    "thread), so that data parallelism uses several cores. 0: JAX's default (one).",
    lower_bound=0)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "host:port of process 0 of a multi-process run (JAX's "
    "distributed runtime). Empty: a single process.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in a multi-process run.",
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index, 0 to "
                                   "--num_processes - 1.", lower_bound=0)
_DIST_AUTO = flags.DEFINE_bool("distributed_auto", False, "Join a multi-process run on a "
                               "cluster JAX detects by itself (SLURM, Cloud TPU, ...).")
_DIST_TIMEOUT = flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for all "
                                     "processes of a multi-process run.", lower_bound=1)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Where checkpoints and reports go.")
_RESUME = flags.DEFINE_bool("resume", True, "Continue the run in --workdir if it holds one.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete the run in --workdir first.")


def config_from_flags() -> TrainConfig:
  """The TrainConfig the command line asks for."""
  return TrainConfig(
      data_path=_DATA_PATH.value, lowercase=_LOWERCASE.value, seq_length=_SEQ.value,
      batch_size=_BATCH.value, hidden_size=_HIDDEN.value, init_sigma=_SIGMA.value,
      init_dist=_DIST.value, seed=_SEED.value, dtype=_DTYPE.value, optimizer=_OPT.value,
      learning_rate=_LR.value, clip=_CLIP.value, loss_reduction=_REDUCTION.value,
      grad=_GRAD.value, epochs=_EPOCHS.value, num_steps=_NUM_STEPS.value,
      best_metric=_BEST.value, steps_per_call=_STEPS_PER_CALL.value, log_every=_LOG_EVERY.value,
      sample_every=_SAMPLE_EVERY.value, report_every=_REPORT_EVERY.value,
      sample_length=_SAMPLE_LENGTH.value, passage_length=_PASSAGE.value,
      temperature=_TEMPERATURE.value, checkpoint_every=_CKPT_EVERY.value,
      report_gradcheck_entries=_GC_ENTRIES.value, num_devices=_NUM_DEVICES.value)


def start_runtime(cpu_devices: int, coordinator_address: str, num_processes: int,
                  process_id: int, auto: bool, timeout_s: int) -> None:
  """Devices and processes, before JAX touches a device."""
  if cpu_devices:
    jax.config.update("jax_num_cpu_devices", cpu_devices)
  if auto:
    parallel.initialize_auto(timeout_s)
  elif coordinator_address or num_processes > 1:
    if not coordinator_address:
      raise errors.UserError("--num_processes > 1 needs --coordinator_address=HOST:PORT (the "
                             "address of process 0).")
    parallel.initialize(coordinator_address, num_processes, process_id, timeout_s)
  if not parallel.is_primary():
    logging.set_verbosity(logging.WARNING)  # one process speaks for the run


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {' '.join(argv[1:])}. Flags start with --.")
  config = config_from_flags()
  start_runtime(_CPU_DEVICES.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                _DIST_AUTO.value, _DIST_TIMEOUT.value)
  logging.info("Config: %s", config.to_json())
  summary = train(config, _WORKDIR.value, resume=_RESUME.value, overwrite=_OVERWRITE.value)
  if summary.interrupted:
    raise SystemExit(130)


if __name__ == "__main__":
  errors.run_cli(main)
