"""User-facing errors: what a user can fix is a `UserError`, shown as one paragraph.

Library code raises `UserError` for anything a user can fix: a missing file,
a bad setting, a checkpoint that does not match. The entry points (cli.py)
print its message as one paragraph on stderr and exit with status 2, instead
of a Python traceback. Genuine bugs still raise.
"""

from __future__ import annotations

import os
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
