"""When a run has diverged: the guard the host loop applies after every device call.

A run stops (naming its last good checkpoint) at the first update where

  * the chunk's loss is NaN or infinite, or
  * the smooth loss exceeds --max_loss_ratio times the run's first loss:

      smooth_u > ratio * loss_1,     smooth_u = s * smooth_{u-1} + (1 - s) * loss_u

Why the smooth loss and not each chunk's loss (char-rnn's rule, "3x the first
loss")? A chunk's loss is one noisy draw, and an optimiser's first steps can
overshoot for a few updates before they settle: the original notebook's
initialisation (every weight sigma * U[0, 1), so every hidden unit starts
positive) with AdaGrad at 0.1 takes the course's chunk loss from 99.7 to 380
(3.8x) at updates 3-4 and back under 100 by update 25; the run then learns as
the course says it should. The smooth loss is the course's own curve, with a
memory of 1 / (1 - s) updates (1,000 for the course's s = 0.999): a spike of a
few updates moves it by a few per cent (1.01x there), while a real explosion
(the quickstart at --learning_rate=30 without clipping: chunk losses 30-60
times the first for thousands of updates) carries it over 3x within ten
updates. It is also part of the training state, so a resumed run makes the
same decisions as one that ran in one go.

With --smoothing=0 the smooth loss is the chunk loss and the rule is
char-rnn's. --max_loss_ratio=0 leaves only the NaN/infinity stop.
"""

from __future__ import annotations

import numpy as np


def diverged(losses: np.ndarray, smooths: np.ndarray, first_loss: float | None,
             ratio: float) -> np.ndarray:
  """Where a run has diverged, update by update.

  Args:
    losses: float [n], the chunk losses of n consecutive updates.
    smooths: float [n], the smooth loss after each of them.
    first_loss: the run's first chunk loss (the yardstick), or None if unknown.
    ratio: --max_loss_ratio (0: only NaN and infinity count).

  Returns:
    bool [n]: True where the loss is not finite or the smooth loss is above
    ratio x first_loss.
  """
  losses, smooths = np.asarray(losses), np.asarray(smooths)
  bad = ~np.isfinite(losses) | ~np.isfinite(smooths)
  if ratio and first_loss is not None and first_loss > 0:
    bad |= smooths > ratio * first_loss
  return bad


def describe(loss: float, smooth: float, first_loss: float | None, ratio: float) -> str:
  """What went wrong at the first diverged update, as a phrase ("the loss became nan", ...)."""
  if not np.isfinite(loss):
    return f"the loss became {loss}"
  if not np.isfinite(smooth):
    return f"the smooth loss became {smooth}"
  return (f"the smooth loss reached {smooth:.4g}, {smooth / first_loss:.1f} times the first "
          f"loss {first_loss:.4g} (--max_loss_ratio={ratio:g})")
