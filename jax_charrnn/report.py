"""The files a run leaves for people: metrics, plot, text evolution, passage, report.

  metrics.jsonl     one JSON object per logged step
  losses.f32        every update's loss and smooth loss (float32 pairs), for the plot
  loss.png          loss and smooth loss against updates
  samples.txt       the evolution of the generated text (the course's report)
  best_passage.txt  a passage written by the best parameters
  report.md         a one-page summary a student could hand in

Host-side only: nothing here runs on the accelerator.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from typing import Iterable, Sequence

import numpy as np

from jax_charrnn import checkpoint
from jax_charrnn.config import TrainConfig, settings_rows

METRICS = "metrics.jsonl"
LOSS_PLOT = "loss.png"
SAMPLES = "samples.txt"
PASSAGE = "best_passage.txt"
REPORT = "report.md"
STEP_LOSSES = "losses.f32"
ALL_FILES = (METRICS, STEP_LOSSES, LOSS_PLOT, SAMPLES, PASSAGE, REPORT)  # every run writes them
PAGE, PAGE_NUMBERS = "visualize.html", "visualize.json"  # with --visualize_chars (visualize.py)


def remove_outputs(workdir: str) -> None:
  """Deletes the files of an earlier run (for --overwrite)."""
  for name in (*ALL_FILES, PAGE, PAGE_NUMBERS):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)


def outputs_current(workdir: str) -> bool:
  """Whether report.md exists and is newer than the newest checkpoint (finishing happened)."""
  path = os.path.join(workdir, REPORT)
  if not os.path.exists(path):
    return False
  saved = checkpoint.latest_mtime(workdir)
  return saved is None or os.path.getmtime(path) >= saved


def append_metrics(workdir: str, rows: Iterable[dict]) -> None:
  with open(os.path.join(workdir, METRICS), "a", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")


def _parse_metrics(workdir: str) -> tuple[list[dict], int]:
  """(rows, lines that are not a metrics row: torn, junk, or not UTF-8)."""
  path = os.path.join(workdir, METRICS)
  if not os.path.exists(path):
    return [], 0
  rows, bad = [], 0
  with open(path, "rb") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line.decode("utf-8"))
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
          raise ValueError(line[:40])
        rows.append(row)
      except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        bad += 1
  return rows, bad


def read_metrics(workdir: str) -> list[dict]:
  """The metrics rows (lines that are not a row are passed over)."""
  return _parse_metrics(workdir)[0]


def truncate_metrics(workdir: str, step: int, keep_last: bool = True) -> int:
  """Keeps only rows up to `step` (a resumed run rewrites what came after its checkpoint),
  without the row at `step` itself unless keep_last; returns how many damaged lines were
  dropped."""
  rows, bad = _parse_metrics(workdir)
  last = step if keep_last else step - 1
  _write_atomic(os.path.join(workdir, METRICS),
                "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= last))
  return bad


def _write_atomic(path: str, text: str) -> None:
  """Writes a file whole or not at all (a full disk leaves the old one in place)."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


_SAMPLE_HEADER = re.compile(
    r"^--- (?:before the first update|after ([\d,]+) updates \(smooth loss [^)]*\)) ---$",
    re.MULTILINE)


def append_sample(workdir: str, step: int, text: str, smooth_loss: float | None) -> None:
  """Adds one entry to the text-evolution file."""
  header = ("--- before the first update ---" if step == 0 else
            f"--- after {step:,} updates (smooth loss {smooth_loss:.3f}) ---")
  with open(os.path.join(workdir, SAMPLES), "a", encoding="utf-8") as f:
    f.write(f"{header}\n{text}\n\n")


def truncate_samples(workdir: str, step: int) -> bool:
  """Drops entries written after `step` (they belong to a run that was not checkpointed);
  returns whether bytes that are not UTF-8 had to be replaced."""
  path = os.path.join(workdir, SAMPLES)
  if not os.path.exists(path):
    return False
  with open(path, "rb") as f:
    raw = f.read()
  content = raw.decode("utf-8", errors="replace")
  damaged = "\ufffd" in content and "\ufffd".encode() not in raw
  # Entries start at their header lines (generated text may hold "---" too).
  cut = next((m.start() for m in _SAMPLE_HEADER.finditer(content)
              if m.group(1) and int(m.group(1).replace(",", "")) > step), len(content))
  _write_atomic(path, content[:cut])
  return damaged


def write_passage(workdir: str, text: str) -> None:
  _write_atomic(os.path.join(workdir, PASSAGE), text + "\n")


def append_step_losses(workdir: str, losses: np.ndarray, smooth: np.ndarray) -> None:
  """Adds one (loss, smooth loss) float32 pair per update to losses.f32."""
  pairs = np.stack([losses, smooth], axis=1).astype("<f4")
  with open(os.path.join(workdir, STEP_LOSSES), "ab") as f:
    f.write(pairs.tobytes())


def truncate_step_losses(workdir: str, step: int) -> list[str]:
  """Makes losses.f32 hold exactly the pairs of updates 1..step; returns what it repaired.

  A torn last pair (a size that is not a multiple of 8 bytes) is cut; pairs
  after `step` are dropped (a resumed run rewrites them); missing pairs (the
  file deleted or cut short) become NaN, so that later updates keep their
  place on the plot's axis.
  """
  path = os.path.join(workdir, STEP_LOSSES)
  notes = []
  size = os.path.getsize(path) if os.path.exists(path) else 0
  if size % 8:
    notes.append(f"{STEP_LOSSES} ended in a torn record ({size % 8} bytes); it was cut")
  pairs = size // 8
  if pairs > step or size % 8:
    with open(path, "r+b") as f:
      f.truncate(8 * min(pairs, step))
  if pairs < step:
    with open(path, "ab") as f:
      f.write(np.full((step - pairs, 2), np.nan, "<f4").tobytes())
    notes.append(f"{STEP_LOSSES} held the losses of {pairs:,} of the {step:,} updates done; the "
                 "missing ones are left blank in loss.png")
  return notes


def repair_run_files(workdir: str, step: int, row_due: bool = True) -> list[str]:
  """Cuts the run's files back to `step` (the checkpoint resumed from), repairing what it can;
  returns one note per repair, for the user.

  row_due: whether the run, in one go, would have written a metrics row at `step`. When not,
  the row there is the end of an earlier, shorter session (a smaller --num_steps) and is
  dropped, so that a resumed run's metrics.jsonl holds the rows of the same run in one go.
  """
  notes = []
  bad = truncate_metrics(workdir, step, keep_last=row_due)
  if bad:
    notes.append(f"{METRICS} held {bad} line(s) that were not a metrics row (torn or damaged); "
                 "they were dropped")
  if truncate_samples(workdir, step):
    notes.append(f"{SAMPLES} held bytes that are not UTF-8; they were replaced")
  notes += truncate_step_losses(workdir, step)
  return [f"In {workdir}: {note}." for note in notes]


def read_step_losses(workdir: str) -> np.ndarray:
  """float32 [updates, 2]: the loss and smooth loss of every update so far."""
  path = os.path.join(workdir, STEP_LOSSES)
  if not os.path.exists(path):
    return np.zeros((0, 2), np.float32)
  values = np.fromfile(path, dtype="<f4")
  return values[: len(values) // 2 * 2].reshape(-1, 2)  # a torn last pair is not read


def plot_loss(workdir: str, rows: Sequence[dict], title: str, *, per_update_chars: int = 1,
              steps_per_epoch: int = 0, smoothing: float = 0.999) -> str | None:
  """loss.png: the training loss and the held-out score per character against updates.

  Every curve is in nats per character, so that runs with other batch sizes,
  chunk lengths and loss reductions compare on one axis: a summed loss is
  divided by `per_update_chars` (T x B; 1 for a mean loss). The training loss
  comes from every update (losses.f32) when it is there, else from the logged
  rows, drawn as the mean of bins of updates so that hundreds of thousands of
  noisy points stay readable; the held-out points from the rows' val_loss_per_char.
  Dotted lines mark epoch boundaries (where the carry restarts from zero).
  """
  per_step = read_step_losses(workdir)
  if len(per_step):
    steps = np.arange(1, len(per_step) + 1)
    stride = max(1, len(per_step) // 4000)
    usable = len(per_step) // stride * stride
    loss_x = steps[:usable].reshape(-1, stride).mean(axis=1)
    loss_y = per_step[:usable, 0].reshape(-1, stride).mean(axis=1)
    binned = "" if stride == 1 else f", mean of each {stride} updates"
    smooth_x, smooth_y = steps[::stride], per_step[::stride, 1]
  elif rows:
    loss_x = smooth_x = np.array([r["step"] for r in rows])
    loss_y, smooth_y = [r["loss"] for r in rows], [r["smooth_loss"] for r in rows]
    binned = ", logged updates"
  else:
    return None
  scale = 1.0 / per_update_chars
  val = [(r["step"], r["val_loss_per_char"]) for r in rows if "val_loss_per_char" in r]
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # headless: no display needed
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
  ax.plot(loss_x, np.asarray(loss_y) * scale, lw=0.6, alpha=0.45,
          label=f"training loss{binned} (online: each chunk before the update that learns "
          "from it)")
  if len(per_step) >= 100:
    # The exponential smooth loss lags by about 1 / (1 - smoothing) updates, far behind a
    # short run's loss; a moving mean over a fiftieth of the run follows it.
    window = max(2, len(per_step) // 50)
    csum = np.cumsum(np.nan_to_num(per_step[:, 0].astype(np.float64)))
    mean = (csum[window - 1:] - np.concatenate([[0.0], csum[:-window]])) / window
    ax.plot(np.arange(window, len(per_step) + 1), mean * scale, lw=1.2,
            label=f"moving mean of {window:,} updates")
  ax.plot(smooth_x, np.asarray(smooth_y) * scale, lw=1.8,
          label=f"smooth loss (exponential, smoothing {smoothing:g})")
  if val:
    ax.plot(*zip(*val), "o-", ms=3.5, lw=1.4,
            label="held-out text (the parameters of that moment, on text never trained on)")
  last = float(max(loss_x[-1], smooth_x[-1]))
  _plot_learning_rate(ax, rows)
  if steps_per_epoch and last / steps_per_epoch <= 60:
    for e in range(steps_per_epoch, int(last) + 1, steps_per_epoch):
      ax.axvline(e, color="0.6", lw=0.7, ls=":",
                 label="epoch boundary" if e == steps_per_epoch else None)
  ax.set_xlabel("update step")
  ax.set_ylabel("nats per character")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  path = os.path.join(workdir, LOSS_PLOT)
  fig.savefig(path)
  plt.close(fig)
  return path


def _plot_learning_rate(ax, rows: Sequence[dict]) -> None:
  """The learning rate of the logged updates on a right-hand axis, when a schedule varies it."""
  rates = [(r["step"], r["learning_rate"]) for r in rows if "learning_rate" in r]
  if len({rate for _, rate in rates}) < 2:
    return
  right = ax.twinx()
  right.plot(*zip(*rates), color="0.35", lw=1.0, ls="--")
  right.set_ylabel("learning rate (dashed)", color="0.35")
  right.set_ylim(bottom=0)
  right.tick_params(axis="y", colors="0.35")


def _optimiser_line(config: TrainConfig, facts: "RunFacts") -> str:
  """The optimiser, its learning rate (and schedule) and the clipping, in words."""
  rate = f"learning rate {config.learning_rate}"
  if config.lr_schedule != "constant":
    rate += f" ({config.lr_schedule} schedule"
    rate += f", floor {config.min_lr_ratio:g} of it)" if config.min_lr_ratio else ")"
  if config.warmup_steps:
    rate += f" after {config.warmup_steps:,} updates of linear warm-up"
  clipped = (f"clipped elementwise to ±{config.clip}" if config.clip_mode == "elementwise"
             else f"clipped to a global norm of {config.clip}")
  return (f"- {config.optimizer} with {rate}, gradients {clipped}; {grad_phrase(config.grad, facts)}; "
          f"loss reduction: {config.loss_reduction}.")


@dataclasses.dataclass
class RunFacts:
  """What report.md states about a run."""

  source: str
  num_chars: int
  vocab_size: int
  model: str                  # e.g. "1 layer of rnn, H = 100"
  num_params: int
  steps_per_epoch: int
  total_steps: int
  steps_done: int
  first_logged: dict | None   # the first metrics row
  final_smooth_loss: float
  best_loss: float
  best_step: int
  best_metric: str
  compile_seconds: float
  train_seconds: float        # this session
  total_train_seconds: float  # all sessions of the run (resumes add up)
  chars_per_second: float
  status: str
  gradcheck_table: str | None  # Markdown, or None when skipped
  page: str = ""              # visualize's page of the run, described ("" when none was written)
  val_chars: int = 0          # held-out characters (0: no held-out split)
  val_bpc: float | None = None           # at the end
  val_nats: float | None = None
  grads: list = dataclasses.field(default_factory=list)  # [[from step, method], ...]


ONLINE = ("The training loss is *online*: each chunk is scored just before the update that "
          "learns from it, by weights that the updates before it adapted to the text just "
          "before it (the optimiser's early steps are large). It says how well the run follows the "
          "text as it reads it, not how good one fixed set of parameters is; the held-out "
          "score is the fixed parameters' on text they never saw. Early in a run the two can "
          "differ by several bits per character.")


def _held_out(config: TrainConfig, facts: RunFacts) -> list[str]:
  if not facts.val_chars:
    return ["- No held-out text (val_fraction = 0): the losses above are on training text."]
  where = (f"the last {100 * config.val_fraction:g}% of the text, {facts.val_chars:,} "
           "characters never trained on")
  if facts.val_bpc is None:
    return [f"- Held-out text: {where}; not scored yet."]
  return [f"- Held-out text ({where}): **{facts.val_bpc:.4f} bits/char** ({facts.val_nats:.4f} "
          f"nats/char) with the final parameters (`python -m jax_charrnn.evaluate` scores any "
          "text the same way).", f"  {ONLINE}"]


def per_char(loss: float, config: TrainConfig) -> str:
  """A chunk's loss in nats and bits per character, e.g. "1.639 nats/char, 2.365 bits/char"."""
  chars = 1 if config.loss_reduction == "mean" else config.seq_length * config.batch_size
  nats = loss / chars
  return f"{nats:.3f} nats/char, {nats / math.log(2):.3f} bits/char"


def _best(config: TrainConfig, facts: RunFacts) -> str:
  if facts.best_step < 0:
    return f"- Best {facts.best_metric.replace('_', ' ')}: none yet."
  if facts.best_metric == "val_bpc":
    return (f"- Best held-out score: **{facts.best_loss:.4f} bits/char**, the parameters after "
            f"{facts.best_step:,} updates; they wrote the passage below.")
  return (f"- Best {facts.best_metric.replace('_', ' ')}: **{facts.best_loss:.3f}** "
          f"({per_char(facts.best_loss, config)}), the parameters after {facts.best_step:,} "
          "updates (measured on the next chunk); they wrote the passage below.")


def _training_time(facts: RunFacts) -> str:
  total, now = facts.total_train_seconds, facts.train_seconds
  speed = f"{facts.chars_per_second:,.0f} characters/s"
  if now == total:
    return f"{total:.1f} s ({speed}), plus {facts.compile_seconds:.1f} s of compilation."
  if not now:
    return f"{total:.1f} s in all sessions."
  return (f"{total:.1f} s in all sessions (the run was resumed); the last one trained {now:.1f} s "
          f"({speed}), plus {facts.compile_seconds:.1f} s of compilation.")


def _read(workdir: str, name: str) -> str:
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return "(none)"
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read().rstrip()


def grad_phrase(grad: str, facts: RunFacts) -> str:
  """How the run's gradients were computed, e.g. "manual gradients", or by update range when a
  resume changed --grad ("manual gradients for updates 1-13, autodiff for 14-25")."""
  grads = facts.grads or [[0, grad]]
  spans = []
  for i, (start, method) in enumerate(grads):
    end = grads[i + 1][0] if i + 1 < len(grads) else facts.steps_done
    if end > start:
      spans.append((start + 1, end, method))
  if len({m for _, _, m in spans}) <= 1:
    return f"{spans[0][2] if spans else grads[-1][1]} gradients"
  return "gradients: " + ", ".join(f"{m} for updates {a:,}-{b:,}" for a, b, m in spans)


def _summary_lines(config: TrainConfig, facts: RunFacts) -> list[str]:
  """The report's "Data and model" and "Results" sections."""
  epochs = facts.steps_done / facts.steps_per_epoch
  first = facts.first_logged
  first = "" if first is None else f"{first['smooth_loss']:.3f} at update {first['step']:,}, "
  return [
      "## Data and model",
      f"- Text: {facts.source}, {facts.num_chars:,} characters, K = {facts.vocab_size} distinct.",
      f"- Network: {facts.model}, {facts.num_params:,} parameters; chunks of T = "
      f"{config.seq_length} characters, {config.batch_size} stream(s); "
      f"{facts.steps_per_epoch:,} updates per epoch.",
      _optimiser_line(config, facts),
      "",
      "## Results",
      f"- Updates: {facts.steps_done:,} of {facts.total_steps:,} ({epochs:.2f} epochs).",
      f"- Smooth loss ({_loss_unit(config)}): {first}**{facts.final_smooth_loss:.3f}** at the "
      f"end ({per_char(facts.final_smooth_loss, config)}).",
      *_held_out(config, facts),
      _best(config, facts),
      f"- Training time: {_training_time(facts)}",
      *([f"- What the network learned, in the browser: [{PAGE}]({PAGE}) ({facts.page})."]
        if facts.page else []),
  ]


def _loss_unit(config: TrainConfig) -> str:
  if config.loss_reduction == "mean":
    return "the mean over each chunk's characters"
  return (f"summed over each chunk's {config.seq_length * config.batch_size:,} characters, as "
          "the course reports it")


# The report's check reads at most this many characters (the course's chunk): a chunk of 25
# already runs every path of BPTT through time, and each of the check's ~2,000 perturbed
# losses per parameter reads the whole chunk (measured: 8 minutes for a 2 x 512 LSTM's chunk
# of 100 at the end of its run).
REPORT_CHECK_CHARS = 25


def check_config(config: TrainConfig) -> TrainConfig:
  """The network of `config` on the chunk the report's gradient check reads.

  One stream: the gradients of B streams are the sum of theirs, and B copies of a
  large network's activations per perturbed loss would make the check the run's
  slowest part; at most REPORT_CHECK_CHARS characters, for the same reason.
  """
  return config.replace(batch_size=1, seq_length=min(config.seq_length, REPORT_CHECK_CHARS))


# RunFacts.gradcheck_table when a signal stopped the check (outputs.gradcheck_table).
CHECK_STOPPED = "stopped"


def _gradcheck_lines(config: TrainConfig, facts: RunFacts) -> list[str]:
  if not facts.gradcheck_table:
    return ["Skipped (report_gradcheck_entries = 0)."]
  chars = check_config(config).seq_length
  if facts.gradcheck_table == CHECK_STOPPED:
    return [f"Skipped: Ctrl-C or SIGTERM stopped the run before the check finished. `python -m "
            f"jax_charrnn.gradcheck` with this run's network settings and --seq_length={chars} "
            "--batch_size=1 runs it."]
  return [
      f"Relative errors ||a-b|| / max(1e-6, ||a||+||b||) on the first {chars} characters of the "
      "text (one stream), at freshly initialised parameters of this shape, float64; numerical "
      "gradients by Richardson-extrapolated centred differences, a step chosen per parameter, "
      f"on {config.report_gradcheck_entries} random entries per parameter (`python -m "
      "jax_charrnn.gradcheck --entries=0` checks every entry, on a whole chunk):",
      "",
      facts.gradcheck_table,
  ]


def write_report(workdir: str, config: TrainConfig, facts: RunFacts) -> str:
  """report.md: model, results, gradient check, loss plot, text evolution, best passage, settings.

  Args:
    config: the run's TrainConfig (its declared settings make the settings table).
  """
  value = lambda v: f"`{v}`" if v != "" else "(empty)"
  settings = [f"| {name} | {value(v)} | {help_text} |"
              for name, v, help_text in settings_rows(config)]
  lines = [
      "# Character-level recurrent network: training report",
      "",
      f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} by jax_charrnn. Status: **{facts.status}**.",
      "",
      *_summary_lines(config, facts),
      "",
      f"![loss]({LOSS_PLOT})",
      "",
      "## Gradient check",
      *_gradcheck_lines(config, facts),
      "",
      "## Evolution of the generated text",
      "",
      "```text", _read(workdir, SAMPLES), "```",
      "",
      "## Passage from the best parameters",
      "",
      "```text", _read(workdir, PASSAGE), "```",
      "",
      "## Settings",
      "",
      "| setting | value | meaning |",
      "|---|---|---|",
      *settings,
      "",
  ]
  path = os.path.join(workdir, REPORT)
  _write_atomic(path, "\n".join(lines))
  return path


def _binned(values: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
  """(update numbers, mean of each bin) of per-update values, about `points` bins."""
  stride = max(1, len(values) // points)
  usable = len(values) // stride * stride
  steps = np.arange(1, usable + 1).reshape(-1, stride).mean(axis=1)
  return steps, values[:usable].reshape(-1, stride).mean(axis=1)


def plot_runs(path: str, runs: dict[str, tuple[str, int | None]], *, title: str,
              per_update_chars: int = 1) -> None:
  """A sweep's sweep_loss.png: every run's smooth loss per character, update by update.

  runs: {name: (its workdir, the update it diverged at or None)}. A diverged
  run's curve ends where it diverged, with an x.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
  for name, (workdir, diverged_at) in runs.items():
    smooth = read_step_losses(workdir)[:, 1].astype(np.float64) / per_update_chars
    if diverged_at is not None:
      smooth = smooth[:diverged_at]
    if not len(smooth):
      continue
    x, y = _binned(smooth)
    label = name if diverged_at is None else f"{name} (diverged at update {diverged_at:,})"
    line, = ax.plot(x, y, lw=1.2, label=label)
    if diverged_at is not None:
      ax.plot([len(smooth)], [smooth[-1]], "x", ms=8, color=line.get_color())
  ax.set_xlabel("update")
  ax.set_ylabel("smooth loss, nats per character")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
