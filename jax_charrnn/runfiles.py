"""A run's files in its directory: their names and formats, how they grow, how they are repaired.

  metrics.jsonl     one JSON object per logged step (appended)
  losses.f32        every update's loss and smooth loss, little-endian float32 pairs (appended)
  samples.txt       the evolution of the generated text, one headed entry per sample (appended)
  best_passage.txt  a passage written by the best parameters (written whole)
  loss.png          the training and held-out curves (plots.py draws it)
  report.md         the run's one-page report (report.py writes it)
  visualize.html    with --visualize_chars: what the network learned (visualize.py), and
  visualize.json    its numbers

This module owns the formats: appending, reading, and cutting the appended
files back to a checkpoint's step when a run resumes (repairing a torn record
or bytes that are not UTF-8, and saying so). What a person reads is written by
report.py (report.md) and plots.py (the figures). Host-side only; every file
written whole goes through `paths.write_atomic`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Iterable

import numpy as np

from jax_charrnn import checkpoint, paths

METRICS = "metrics.jsonl"
STEP_LOSSES = "losses.f32"
SAMPLES = "samples.txt"
PASSAGE = "best_passage.txt"
LOSS_PLOT = "loss.png"
REPORT = "report.md"
ALL_FILES = (METRICS, STEP_LOSSES, LOSS_PLOT, SAMPLES, PASSAGE, REPORT)  # every run writes them
PAGE, PAGE_NUMBERS = "visualize.html", "visualize.json"  # with --visualize_chars (visualize.py)


def _no_link(path: str, flags: int) -> int:
  """open()'s opener for the files a run appends to: never through a link (rundir refuses one
  up front; this holds if one appears during the run)."""
  return os.open(path, flags | os.O_NOFOLLOW, 0o666)


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


# ---- metrics.jsonl ----

def append_metrics(workdir: str, rows: Iterable[dict]) -> None:
  with open(os.path.join(workdir, METRICS), "a", encoding="utf-8", opener=_no_link) as f:
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
  paths.write_text(os.path.join(workdir, METRICS),
                   "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= last))
  return bad


# ---- samples.txt and best_passage.txt ----

_SAMPLE_HEADER = re.compile(
    r"^--- (?:before the first update|after ([\d,]+) updates \(smooth loss [^)]*\)) ---$",
    re.MULTILINE)


def append_sample(workdir: str, step: int, text: str, smooth_loss: float | None) -> None:
  """Adds one entry to the text-evolution file."""
  header = ("--- before the first update ---" if step == 0 else
            f"--- after {step:,} updates (smooth loss {smooth_loss:.3f}) ---")
  with open(os.path.join(workdir, SAMPLES), "a", encoding="utf-8", opener=_no_link) as f:
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
  paths.write_text(path, content[:cut])
  return damaged


def write_passage(workdir: str, text: str) -> None:
  paths.write_text(os.path.join(workdir, PASSAGE), text + "\n")


def read_text(workdir: str, name: str) -> str:
  """A run's text file as it is ("(none)" when it is missing; bad bytes replaced)."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return "(none)"
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read().rstrip()


# ---- losses.f32 ----

def append_step_losses(workdir: str, losses: np.ndarray, smooth: np.ndarray) -> None:
  """Adds one (loss, smooth loss) float32 pair per update to losses.f32."""
  pairs = np.stack([losses, smooth], axis=1).astype("<f4")
  with open(os.path.join(workdir, STEP_LOSSES), "ab", opener=_no_link) as f:
    f.write(pairs.tobytes())


def read_step_losses(workdir: str) -> np.ndarray:
  """float32 [updates, 2]: the loss and smooth loss of every update so far."""
  path = os.path.join(workdir, STEP_LOSSES)
  if not os.path.exists(path):
    return np.zeros((0, 2), np.float32)
  values = np.fromfile(path, dtype="<f4")
  return values[: len(values) // 2 * 2].reshape(-1, 2)  # a torn last pair is not read


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
    with open(path, "r+b", opener=_no_link) as f:
      f.truncate(8 * min(pairs, step))
  if pairs < step:
    with open(path, "ab", opener=_no_link) as f:
      f.write(np.full((step - pairs, 2), np.nan, "<f4").tobytes())
    notes.append(f"{STEP_LOSSES} held the losses of {pairs:,} of the {step:,} updates done; the "
                 "missing ones are left blank in loss.png")
  return notes


# ---- a resumed run ----

def repair(workdir: str, step: int, row_due: bool = True) -> list[str]:
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
