"""User-facing errors and the CLI wrapper that turns them into one paragraph.

Library code raises `UserError` for anything a user can fix: a missing file,
a bad flag, a checkpoint that does not match. Command-line entry points run their `main`
through `run_cli`, which prints the message as one paragraph on stderr and exits
with status 2, instead of a Python traceback. Genuine bugs still raise.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from typing import Callable, Sequence

from absl import app
from absl import logging as absl_logging


class UserError(Exception):
  """A mistake the user can fix; its message says what happened and what to do."""


class _QuietLibraries(logging.Filter):
  """Drops INFO records that third-party libraries log through absl."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def paragraph(message: str) -> str:
  """`message` as the one wrapped paragraph users see: "error: ..."."""
  return textwrap.fill("error: " + " ".join(str(message).split()), width=100) + "\n"


def fail(message: str, exit_code: int = 2) -> None:
  """Prints `message` as one paragraph on stderr and exits."""
  sys.stderr.write(paragraph(message))
  sys.exit(exit_code)


def run_cli(main: Callable[[Sequence[str]], None]) -> None:
  """`app.run(main)`, with flag and user errors reported as one paragraph.

  absl reports a bad flag value itself (one line on stderr, exit status 1);
  a flag file that cannot be read raises an `IllegalFlagValueError` from
  inside absl's parser, which we catch here as well.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  def _guarded(argv):
    # JAX logs at INFO which accelerator plugins it did not find; that is noise
    # on a CPU machine, so only warnings and errors from JAX reach the user.
    logging.getLogger("jax").setLevel(logging.WARNING)
    # orbax logs every save step by step at INFO through absl; keep its warnings.
    absl_logging.get_absl_handler().addFilter(_QuietLibraries())
    try:
      main(argv)
    except UserError as e:
      fail(str(e))
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
      fail("Interrupted.", exit_code=130)

  try:
    app.run(_guarded)
  except flags.Error as e:  # e.g. --flagfile naming a file that is not there
    fail(f"{e}. Check the flag's spelling and value, or run with --helpfull.")
