"""User-facing errors: what a user can fix is a `UserError`, shown as one paragraph.

Library code raises `UserError` for anything a user can fix: a missing file,
a bad setting, a checkpoint that does not match. The entry points (cli.py)
print its message as one paragraph on stderr and exit with status 2, instead
of a Python traceback. Genuine bugs still raise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap


class UserError(Exception):
  """A mistake the user can fix; its message says what happened and what to do."""


def paragraph(message: str) -> str:
  """`message` as the one wrapped paragraph users see: "error: ..."."""
  # Long words (paths) stay whole, so that they can be copied.
  return textwrap.fill("error: " + " ".join(str(message).split()), width=100,
                       break_long_words=False, break_on_hyphens=False) + "\n"


def fail(message: str, exit_code: int = 2) -> None:
  """Prints `message` as one paragraph on stderr and exits.

  The paragraph is the last thing on stderr: what background threads of the
  libraries (orbax's, tensorstore's) might print while the interpreter shuts
  down after a failed save goes to the log file, not to the person.
  """
  sys.stderr.write(paragraph(message))
  sys.stderr.flush()
  sys.stdout.flush()
  try:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
  except (OSError, ValueError):  # no real stderr (embedded, captured): nothing to silence
    pass
  sys.exit(exit_code)


# Files being written whole-or-not-at-all (paths.write_atomic's temporary files): Ctrl-C under
# `stop_at_once_on_ctrl_c` removes them, as the writer's own clean-up would have.
_PARTIAL: set[str] = set()


@contextlib.contextmanager
def partial_file(path: str):
  """Marks `path` as half-written for the duration: an at-once Ctrl-C removes it."""
  _PARTIAL.add(path)
  try:
    yield
  finally:
    _PARTIAL.discard(path)


def _stop_now(signum, frame):  # pylint: disable=unused-argument
  for path in list(_PARTIAL):
    try:
      os.remove(path)
    except OSError:
      pass
  sys.stdout.flush()
  sys.stderr.write(paragraph("Interrupted."))
  sys.stderr.flush()
  os._exit(130)  # pylint: disable=protected-access


def stop_at_once_on_ctrl_c() -> None:
  """Ctrl-C ends this process at once: one line, exit 130. Only for commands that leave
  nothing half-written (evaluate, sample; visualize and export, whose files are written by
  paths.write_atomic, whose temporary file is removed), installed before JAX is imported.

  Python's own handler raises KeyboardInterrupt wherever the main thread is, and JAX runs
  Python during garbage collection (its _xla_gc_callback): an interrupt raised there, or while
  JAX loads, is printed as 'Exception ignored' or a traceback and lost, and the command reads
  on for minutes. This handler runs at the same moments (between device calls, which are
  sized to about a second) but raises nothing that could be swallowed.
  """
  signal.signal(signal.SIGINT, _stop_now)
