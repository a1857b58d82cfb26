"""A file a command writes for a person (export's model.npz, visualize's page): checked before
any work, written whole or not at all.

  path = output_file(out, suffix=".npz", overwrite=o["overwrite"])   # before loading anything
  write_out(path, lambda f: np.savez(f, **arrays))                    # after the work

The rules, the same for every command:
  - an empty name, or one that is only the suffix (".npz"), is refused: it
    would write a hidden file no one asked for;
  - a directory is refused (never `DIR.npz` beside it, never a file inside it
    under a name the person did not give);
  - an existing file is refused unless --overwrite: a command never replaces a
    file it did not write in this call without being told to;
  - the directory it goes in must exist and be writable;
  - the file is written to a temporary name beside it and renamed when
    complete, so a full disk or a Ctrl-C leaves the old file (or none), never
    half of one.
A run's own files (its metrics, report, visualize's default page in the workdir)
follow the run's rules instead (rundir.py, runfiles.py), written by the same `write_atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from typing import BinaryIO, Callable, Sequence

from jax_charrnn.errors import UserError, partial_file


def output_file(out: str, *, suffix: str = "", overwrite: bool = False, flag: str = "--out",
                example: str = "model.npz") -> str:
  """The path to write for `--out=out` (with `suffix` added when it lacks it), checked.

  Raises:
    UserError: an empty name, a directory, an existing file without
      overwrite, or a directory that does not exist or cannot be written.
  """
  if not out or not out.strip():
    raise UserError(f"{flag} is empty: pass the file to write, e.g. {flag}={example}.")
  path = os.path.expanduser(out)
  if os.path.isdir(path) or path.endswith(os.sep):
    raise UserError(f"{flag}={out!r} is a directory: pass a file name, e.g. "
                    f"{flag}={os.path.join(out, example)}. Nothing was written.")
  if suffix and not path.endswith(suffix):
    path += suffix  # e.g. np.savez's habit, said out loud: the name it really has
  if os.path.basename(path) == suffix:
    raise UserError(f"{flag}={out!r} names no file, only the extension {suffix!r} (it would "
                    f"write a hidden file): pass a name, e.g. {flag}={example}.")
  if os.path.isdir(path):
    raise UserError(f"{path!r} is a directory: pass another {flag}. Nothing was written.")
  if os.path.lexists(path) and not overwrite:
    raise UserError(f"{path!r} already exists. Pass --overwrite to replace it, or choose "
                    f"another {flag}; nothing was written.")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise UserError(f"Cannot write {path!r}: its directory {parent!r} does not exist. Make "
                    f"it first, or pass another {flag}.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f"Cannot write in {parent!r} (permission denied): pass an {flag} in a "
                    "directory you can write to.")
  return path


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
  """Writes `path` whole or not at all: `write(f)` into a temporary file beside it, then a
  rename. The one atomic writer of the package (a run's own files use it too): a failed or
  interrupted write leaves the old file (or none) and removes the temporary one, a Ctrl-C
  that ends the process at once (errors.stop_at_once_on_ctrl_c) included.

  Raises:
    OSError: the file cannot be written (e.g. a full disk); the caller says what to do.
  """
  write_together([(path, write)])


def write_together(files: Sequence[tuple[str, Callable[[BinaryIO], None]]]) -> None:
  """`write_atomic` of files that belong together (a page and its numbers): each written whole
  to its temporary name first, then all renamed with SIGINT and SIGTERM held off, so that an
  interruption leaves all of them or none (the new ones or the old ones), never one without
  the other."""
  with contextlib.ExitStack() as stack:
    tmps = []
    try:
      for path, write in files:
        directory, name = os.path.split(os.path.abspath(path))
        tmps.append(os.path.join(directory, f".{name}.tmp{os.getpid()}"))
        stack.enter_context(partial_file(tmps[-1]))
        with open(tmps[-1], "wb") as f:
          write(f)
      for path, _ in files:  # a rename onto a directory fails: found before any is renamed
        if os.path.isdir(path):
          raise IsADirectoryError(errno.EISDIR, "a directory has its name", path)
      held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
      try:  # a signal now is delivered once every file has its new content
        for (path, _), tmp in zip(files, tmps):
          os.replace(tmp, path)
      finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
      for tmp in tmps:
        if os.path.exists(tmp):
          os.remove(tmp)


def shown(path: str) -> str:
  """`path` as text that can be printed or written as UTF-8: a byte of the name that is not
  UTF-8 (Python holds it as a lone surrogate) shown as U+FFFD."""
  return os.fsencode(path).decode("utf-8", "replace")


def write_text(path: str, text: str) -> None:
  """`write_atomic` of a UTF-8 text."""
  write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_out(path: str, write: Callable[[BinaryIO], None], flag: str = "--out",
              more: Sequence[tuple[str, Callable[[BinaryIO], None]]] = ()) -> None:
  """`write_atomic` of a file a person asked for (`output_file`'s path); with `more`, files
  that go with it, written together (`write_together`).

  Raises:
    UserError: a file cannot be written (e.g. a full disk).
  """
  try:
    write_together([(path, write), *more])
  except OSError as e:
    raise UserError(f"Cannot write {path!r} ({e.strerror or e}). Pass an {flag} in a "
                    "directory you can write to, with space left.") from None
