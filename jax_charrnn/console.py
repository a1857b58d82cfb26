"""What a person watching a run reads: plain lines on stdout, warnings on stderr.

The trainer and the sweep talk to the user through a `Console`: progress lines
("step 1000/55794 (epoch 0.05, 1.8%)  loss ...") and notes go to stdout as they
are, warnings to stderr as "warning: ...", with no logging prefixes. Every line
also goes to the absl log, which the entry points write to a file in the
workdir (train.log, sweep.log) together with the libraries' own messages.
"""

from __future__ import annotations

import sys

from absl import logging


class Console:
  """Plain output for people (quiet: only the log, e.g. on processes other than 0)."""

  def __init__(self, quiet: bool = False):
    self.quiet = quiet

  def say(self, text: str) -> None:
    logging.info("%s", text)
    if not self.quiet:
      sys.stdout.write(text + "\n")
      sys.stdout.flush()

  def warn(self, text: str) -> None:
    logging.warning("%s", text)
    if not self.quiet:
      sys.stderr.write("warning: " + text + "\n")
      sys.stderr.flush()
