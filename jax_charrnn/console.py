"""What a person watching a run reads: plain lines on stdout, warnings on stderr.

The trainer and the sweep talk to the user through a `Console`: progress lines
("step 1000/55794 (epoch 0.05, 1.8%)  loss ...") and notes go to stdout as they
are, warnings to stderr as "warning: ...", with no logging prefixes. Every line
also goes to the absl log, which the entry points write to a file in the
workdir (train.log, sweep.log) together with the libraries' own messages.
A Ctrl-C (SIGINT) or SIGTERM becomes a flag the command reads between device
calls (`Interrupts`), acknowledged at once on stderr.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys
import threading

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


class LogFile(std_logging.FileHandler):
  """The workdir's log file (train.log, sweep.log), which records every line and the libraries'
  messages: held in memory until the run is accepted (`keep_logs`), so that a start refused on
  its settings, its data or its workdir leaves nothing behind, not even a log in someone else's
  directory; then written, the held records first. Never written through a link; a record that
  cannot be written (a full disk) is dropped and the next one tries again, as an unusable
  workdir is the trainer's to report, as a paragraph."""

  MOST_HELD = 10_000  # records before the run is accepted (a few dozen, in practice)

  def __init__(self, path: str):
    super().__init__(path, encoding="utf-8", delay=True)
    self._held: list[std_logging.LogRecord] | None = []
    _LOG_FILES.append(self)

  def emit(self, record: std_logging.LogRecord) -> None:
    if self._held is None:
      super().emit(record)
    elif len(self._held) < self.MOST_HELD:
      self._held.append(record)

  def keep(self) -> None:
    held, self._held = self._held or [], None
    for record in held:
      self.handle(record)

  def _open(self):
    try:
      os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
      fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                   0o666)
      return open(fd, "a", encoding=self.encoding)  # pylint: disable=consider-using-with
    except OSError:
      return None  # no stream: the record is dropped


_LOG_FILES: list[LogFile] = []


def keep_logs() -> None:
  """The run is accepted (its workdir checked and claimed): its log files are written from now
  on, with what was held."""
  for log in _LOG_FILES:
    log.keep()


class Interrupts:
  """SIGINT/SIGTERM become a flag a command reads between device calls.

  The first signal asks it to stop after the current call (the trainer saves
  first); later ones are acknowledged and change nothing, so a save in
  progress is never cut short. `doing` and `again` are what the two warnings
  say after "Received SIGINT: ".
  """

  def __init__(self, console: Console,
               doing: str = "saving the state after the current device call, then stopping.",
               again: str = "already stopping; saving..."):
    self.console = console
    self.doing, self.again = doing, again
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
      self.console.warn(f"Received {name}: {self.again}")
      return
    self.signal = signum
    self.console.warn(f"Received {name}: {self.doing}")

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
