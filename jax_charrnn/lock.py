"""One trainer per workdir: an OS-level lock that dies with the process holding it.

`WorkdirLock(workdir)` takes an exclusive `fcntl.flock` on <workdir>/.lock and
writes the holder's pid, host and start time into it. A second trainer or
sweep on the same workdir is refused with a paragraph naming that process.
The kernel drops the lock when its holder exits for any reason (kill -9
included), so a stale lock never blocks a later run; a run that ends (or
fails) normally also removes the file. Sampling, evaluating and
exporting only read a workdir and take no lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

from jax_charrnn.errors import UserError

LOCK_FILE = ".lock"


class WorkdirLock:
  """Exclusive use of a workdir for the life of the `with` block (or the process)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: int | None = None

  def __enter__(self) -> "WorkdirLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
      os.close(fd)
      raise UserError(
          f"The workdir {os.path.dirname(self.path)!r} is in use by {holder}. Wait for it to "
          "finish or stop it (Ctrl-C saves its state), or choose another --workdir. Sampling "
          "and evaluating a busy workdir work as usual.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()} (since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      # Removed while still held: a finished run leaves no lock file behind (a process that
      # opens the name from now on makes a new file and takes its lock).
      try:
        os.unlink(self.path)
      except OSError:
        pass
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
