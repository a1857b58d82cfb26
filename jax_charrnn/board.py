"""Live training curves in TensorBoard (--tensorboard): event files in <workdir>/tensorboard.

  pip install -e '.[tensorboard]'
  python -m jax_charrnn.train --flagfile=experiments/quickstart.flags --tensorboard
  tensorboard --logdir=runs            # every run under runs/, each its own curve

Written through tensorboardX's SummaryWriter (a maintained writer of
TensorBoard's event format that needs no TensorFlow), on the process that
writes the run's files, at the steps the host loop logs:

  loss/train_per_char      the chunk's loss per character (nats), online
  loss/smooth_per_char     the smooth loss per character (nats)
  loss/heldout_per_char    the held-out tail's score (nats/char), when it is scored
  bits/heldout             the same in bits per character
  optim/learning_rate      the learning rate of that update
  speed/chars_per_s        characters per second since the last line
  sample (text)            the samples the run writes to samples.txt

A resumed run writes a purge marker just after the step it resumed from, so TensorBoard
drops what an interrupted session wrote after its last checkpoint: the curves
match the checkpoints, as metrics.jsonl does.
"""

from __future__ import annotations

import os

from jax_charrnn import errors

DIR = "tensorboard"


def check(workdir: str) -> None:
  """Refuses, before any work, a tensorboard/ that the run could not write its event files
  in: a file or a link under that name, or a directory it cannot write."""
  path = os.path.join(workdir, DIR)
  if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
    raise errors.UserError(
        f"{path!r} is {'a link' if os.path.islink(path) else 'a file'}, where --tensorboard "
        "writes the run's event files (a directory). Move it away, or train without "
        "--tensorboard; nothing was changed.")
  probe = os.path.join(path, f".write_test.{os.getpid()}")
  try:
    if os.path.isdir(path):
      with open(probe, "w", encoding="utf-8"):
        pass
      os.remove(probe)
  except OSError as e:
    raise errors.UserError(
        f"Cannot write TensorBoard's event files in {path!r} ({e.strerror}). Make it writable, "
        "move it away, or train without --tensorboard; nothing was changed.") from None


def remove(workdir: str) -> None:
  """Deletes a run's event files (for --overwrite), and tensorboard/ once that leaves it empty;
  anything else in it stays."""
  path = os.path.join(workdir, DIR)
  if os.path.islink(path) or not os.path.isdir(path):
    return
  for name in os.listdir(path):
    if name.startswith("events.out.tfevents.") and os.path.isfile(os.path.join(path, name)):
      os.remove(os.path.join(path, name))
  try:
    os.rmdir(path)
  except OSError:  # a person's files are in it
    pass


class Board:
  """One run's event files (the writing process only)."""

  def __init__(self, workdir: str, start_step: int):
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise errors.UserError(
          "--tensorboard needs tensorboardX, an optional part: pip install -e '.[tensorboard]' "
          "(or pip install tensorboardX), then run the same command again.") from None
    # One file per session, named by its first step: two sessions within one second would
    # otherwise share tensorboardX's name (time and host) and the second would replace it.
    try:
      self._writer = SummaryWriter(os.path.join(workdir, DIR),
                                   filename_suffix=f".from{start_step}",
                                   purge_step=start_step + 1 if start_step else None)
    except OSError as e:  # changed since `check`
      raise errors.UserError(
          f"Cannot write TensorBoard's event files in {os.path.join(workdir, DIR)!r} "
          f"({e.strerror or e}). Make it writable, or train without --tensorboard.") from None

  def scalars(self, step: int, row: dict) -> None:
    """The scalars of one metrics row (see the module docstring for the names)."""
    names = {"loss_per_char": "loss/train_per_char", "learning_rate": "optim/learning_rate",
             "chars_per_s": "speed/chars_per_s", "val_loss_per_char": "loss/heldout_per_char",
             "val_bpc": "bits/heldout", "smooth_loss_per_char": "loss/smooth_per_char"}
    for key, tag in names.items():
      if key in row:
        self._writer.add_scalar(tag, row[key], step)

  def text(self, step: int, text: str) -> None:
    # Markdown: a code block keeps the sample's line breaks and spaces.
    self._writer.add_text("sample", "```\n" + text + "\n```", step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
