"""The run's figures: loss.png (one run's curves) and sweep_loss.png (a sweep's runs).

Every curve is in nats per character, so that runs with other batch sizes,
chunk lengths and loss reductions compare on one axis. The numbers come from
the run's files (runfiles.py: losses.f32, metrics.jsonl); matplotlib draws
them headless (no display needed).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jax_charrnn import runfiles


def _pyplot():
  """matplotlib's pyplot on the headless Agg backend (imported when a figure is drawn)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


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
  per_step = runfiles.read_step_losses(workdir)
  curves = _training_curves(per_step, rows)
  if curves is None:
    return None
  loss_x, loss_y, binned, smooth_x, smooth_y = curves
  scale = 1.0 / per_update_chars
  val = [(r["step"], r["val_loss_per_char"]) for r in rows if "val_loss_per_char" in r]
  plt = _pyplot()
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
  path = os.path.join(workdir, runfiles.LOSS_PLOT)
  fig.savefig(path)
  plt.close(fig)
  return path


def _training_curves(per_step: np.ndarray, rows: Sequence[dict]):
  """(loss x, loss y, how it is binned, smooth x, smooth y) from every update's losses, binned
  to about 4,000 points (or from the logged rows when losses.f32 is empty); None: no data."""
  if len(per_step):
    steps = np.arange(1, len(per_step) + 1)
    stride = max(1, len(per_step) // 4000)
    usable = len(per_step) // stride * stride
    loss_x = steps[:usable].reshape(-1, stride).mean(axis=1)
    loss_y = per_step[:usable, 0].reshape(-1, stride).mean(axis=1)
    binned = "" if stride == 1 else f", mean of each {stride} updates"
    return loss_x, loss_y, binned, steps[::stride], per_step[::stride, 1]
  if rows:
    steps = np.array([r["step"] for r in rows])
    return (steps, [r["loss"] for r in rows], ", logged updates", steps,
            [r["smooth_loss"] for r in rows])
  return None


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
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
  for name, (workdir, diverged_at) in runs.items():
    smooth = runfiles.read_step_losses(workdir)[:, 1].astype(np.float64) / per_update_chars
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
