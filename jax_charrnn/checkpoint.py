"""Checkpoints with orbax: the only module that imports it.

A checkpoint is one orbax step directory under `<workdir>/checkpoints/` with
two items:

  state: the whole `TrainState` (params, optimiser state, the carry, step,
         smooth and best loss, a copy of the best parameters with the carry
         and next character that went with them, the PRNG key);
  meta:  JSON: the vocabulary, the run's config, epoch and position in the
         book, and the losses, so that a checkpoint alone is enough to sample
         from or to resume, and a person can read it.

The best parameters ride inside every checkpoint as their own copy, exact to
the update (not only to the checkpoint interval); so keeping the latest
checkpoints keeps the best parameters too. orbax writes each step into a
temporary directory and renames it when complete, so an interrupted save
never becomes the latest checkpoint.

Restoring needs a target tree (shapes, dtypes, shardings): pass one built on
the current devices, and a checkpoint saved on a GPU restores onto a CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging

from jax_charrnn import parallel
from jax_charrnn.errors import UserError

FORMAT_VERSION = 2  # 2: the network as stacked cells (layers, V, c) and a carry pytree
_SUBDIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), _SUBDIR)


def check_path(workdir: str) -> None:
  """Refuses a workdir under which orbax could not save and restore, before any work is done.

  orbax writes arrays through tensorstore, whose file driver rejects some
  paths that the file system accepts (a doubled or trailing backslash) and
  silently rewrites others (it reads every backslash as a separator: a run in
  `a\\b` would write its arrays under `a/b`, and restore nothing). The path
  is given to the same parser; anything it rejects or changes is refused. A
  run would otherwise find out at its first checkpoint, after the updates.
  """
  path = os.path.join(checkpoint_dir(workdir), "0", "state", "")
  try:
    parsed = ts.KvStore.Spec({"driver": "file", "path": path}).to_json().get("path")
    problem = None if parsed == path else f"it would write under {parsed!r} instead"
  except ValueError as e:
    problem = " ".join(str(e).split())[:160]
  if problem:
    raise UserError(
        f"Checkpoints cannot be saved under the workdir {workdir!r}: the storage library "
        f"rejects the path ({problem}). Choose a plainer --workdir name (letters, digits, "
        "'-', '_', '.', '/'; no backslash); nothing was changed.")


def all_steps(workdir: str) -> list[int]:
  """The finished checkpoints' steps in `workdir`, oldest first ([] if none).

  Read from the directory names (orbax renames a step's temporary directory to
  its number when the step is complete), without a CheckpointManager: on a
  multi-process run a manager's set-up is a collective, and this question must
  not be one.
  """
  path = checkpoint_dir(workdir)
  if not os.path.isdir(path):
    return []
  return sorted(int(name) for name in os.listdir(path)
                if name.isdigit() and os.path.isdir(os.path.join(path, name)))


def has_checkpoint(workdir: str) -> bool:
  """True when `workdir` holds at least one finished checkpoint."""
  return bool(all_steps(workdir))


def latest_mtime(workdir: str) -> float | None:
  """When the newest finished checkpoint was written (None if there is none)."""
  steps = all_steps(workdir)
  if not steps:
    return None
  return os.path.getmtime(os.path.join(checkpoint_dir(workdir), str(steps[-1])))


def make_manager(workdir: str, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager that keeps the `keep` latest steps (asynchronous saves).

  read_only: only for reading; creates nothing and never deletes a step.
  """
  if read_only:
    options = ocp.CheckpointManagerOptions(create=False, max_to_keep=None)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


class Damaged(UserError):
  """No intact checkpoint among the steps asked for."""


def checksum(host_state: Any) -> str:
  """sha256 of every array's dtype, shape and bytes, in tree order (host arrays)."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(host_state):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
  """Starts saving `state` and `meta` as `step` (call `mngr.wait_until_finished()` before exit).

  The meta records a checksum of the state, which `restore` verifies: a step
  whose files were damaged afterwards is never restored silently. (Every
  process of a multi-process run calls this: the checksum gathers the carry's
  shards.)
  """
  meta = dict(meta, format=FORMAT_VERSION, checksum=checksum(parallel.tree_to_host(state)))
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)), force=True)


# Reading goes to a step's files directly, never through a CheckpointManager: a manager
# lists and inspects every step when it starts, which fails while a trainer writes or rotates
# steps in the same directory (sampling a busy workdir must work).

def _step_dir(workdir: str, step: int) -> str:
  return os.path.join(checkpoint_dir(workdir), str(step))


def _read_step_meta(workdir: str, step: int) -> dict:
  with open(os.path.join(_step_dir(workdir, step), "meta", "metadata"), encoding="utf-8") as f:
    meta = json.load(f)
  if not isinstance(meta, dict):
    raise ValueError("it is not a JSON object")
  return meta


def _read_step_state(workdir: str, step: int, abstract: Any) -> Any:
  with ocp.StandardCheckpointer() as reader:
    return reader.restore(os.path.join(_step_dir(workdir, step), "state"), abstract)


def _steps(workdir: str, step: int | None) -> list[int]:
  steps = all_steps(workdir)
  if not steps:
    raise UserError(f"No checkpoint in {checkpoint_dir(workdir)!r}: train first, e.g. "
                    f"`python -m jax_charrnn.train --workdir={workdir}`.")
  if step is None:
    return steps[::-1]  # the newest first
  if step not in steps:
    raise UserError(f"No checkpoint for step {step} in {checkpoint_dir(workdir)!r}; "
                    f"there are: {', '.join(map(str, steps))}.")
  return [step]


def _reason(e: BaseException) -> str:
  text = " ".join(str(e).split())[:200]
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def read_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """(step, meta) of the newest (or given) checkpoint whose meta data reads, without arrays."""
  problems = []
  for s in _steps(workdir, step):
    try:
      return s, _read_step_meta(workdir, s)
    except Exception as e:  # pylint: disable=broad-except  (any damage: skip the step)
      problems.append(f"step {s}: {_reason(e)}")
  raise UserError(f"No checkpoint in {checkpoint_dir(workdir)!r} can be read ("
                  f"{'; '.join(problems)}). Start the run again with --overwrite or in another "
                  "--workdir.")


def quarantine(workdir: str, step: int, why: str = "damaged") -> str:
  """Renames a step's directory to <step>.<why> (kept for a person to look at, and out of the
  way of the step's next save); returns the new name."""
  path = os.path.join(checkpoint_dir(workdir), str(step))
  new, n = f"{path}.{why}", 1
  while os.path.exists(new):
    n += 1
    new = f"{path}.{why}{n}"
  os.rename(path, new)
  return os.path.basename(new)


def restore_step(workdir: str, target: Any, step: int, *,
                 check_meta: Callable[[dict], None] | None = None) -> tuple[Any, dict]:
  """(state, meta) of the checkpoint at `step`, in `target`'s structure, checked whole.

  A step is intact when its meta data reads and its arrays restore and match
  the checksum saved with them.

  Args:
    target: a pytree of arrays or `jax.ShapeDtypeStruct`s (with shardings) that
      says what to restore and onto which devices.
    check_meta: called with the meta before the arrays are read; raises
      UserError when the checkpoint belongs to another run (not damage).

  Raises:
    Damaged: the step is damaged; the message says how ("its arrays cannot be
      restored (...)"), for the caller to put in its sentence.
    UserError: a checkpoint of another version, or of another run (check_meta).
  """
  try:
    meta = _read_step_meta(workdir, step)
  except Exception as e:  # pylint: disable=broad-except  (any damage)
    raise Damaged(f"its meta data cannot be read ({_reason(e)})") from None
  if meta.get("format", 1) != FORMAT_VERSION:
    raise UserError(
        f"The checkpoint at step {step} in {checkpoint_dir(workdir)!r} was written by another "
        f"version of jax_charrnn (checkpoint format {meta.get('format', 1)}; this version "
        f"reads format {FORMAT_VERSION}). Train it again in another --workdir.")
  if check_meta is not None:
    check_meta(meta)
  try:
    state = _read_step_state(workdir, step, jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
    if "checksum" in meta and checksum(parallel.tree_to_host(state)) != meta["checksum"]:
      raise ValueError("its arrays do not match the checksum saved with them")
  except Exception as e:  # pylint: disable=broad-except
    raise Damaged(f"its arrays cannot be restored ({_reason(e)})") from None
  return state, meta


def restore(workdir: str, target: Any, step: int | None = None, *,
            check_meta: Callable[[dict], None] | None = None,
            warn: Callable[[str], None] | None = None) -> tuple[Any, dict]:
  """(state, meta) of the newest intact (or the given) checkpoint, in `target`'s structure
  (what a command that reads a run uses; a resumed run goes through the trainer's start).

  A damaged newer step (a truncated or overwritten array file, a missing or
  garbled meta file, an empty stray directory) is skipped with a warning naming
  it and the step used instead; readers leave it where it is.

  Args:
    target, check_meta: as for `restore_step`.
    warn: where the warnings go (default: absl's log).

  Raises:
    UserError: no checkpoint, another version's checkpoint, or none intact.
  """
  warn = warn or (lambda message: logging.warning("%s", message))
  problems = []
  for s in _steps(workdir, step):
    try:
      state, meta = restore_step(workdir, target, s, check_meta=check_meta)
    except Damaged as e:
      problems.append((s, str(e)))
      continue
    for bad, why in problems:
      warn(f"The checkpoint at step {bad} in {checkpoint_dir(workdir)!r} is damaged ({why}); "
           f"using step {s} instead.")
    return state, meta
  raise Damaged(no_intact(workdir, problems))


def no_intact(workdir: str, problems: list[tuple[int, str]]) -> str:
  """The paragraph for a run none of whose checkpoints is intact ((step, why) of each)."""
  return (f"No intact checkpoint in {checkpoint_dir(workdir)!r}: "
          + "; ".join(f"step {bad}: {why}" for bad, why in problems)
          + ". Start the run again with --overwrite, or in another --workdir.")


# What a run leaves in checkpoints/: orbax's step directories (finished, or the temporary one
# of a save that did not finish) and those set aside by `quarantine`.
_OWN_ENTRY = re.compile(r"\d+(\.orbax-checkpoint-tmp.*|\.(damaged|unused)\d*)?")


def remove_all(workdir: str) -> None:
  """Deletes every checkpoint under workdir (for --overwrite): the directories a run leaves
  there, nothing else (a file a person put in checkpoints/ stays), then checkpoints/ itself
  once that leaves it empty."""
  path = checkpoint_dir(workdir)
  if os.path.islink(path) or not os.path.isdir(path):
    return
  for name in os.listdir(path):
    entry = os.path.join(path, name)
    if _OWN_ENTRY.fullmatch(name) and os.path.isdir(entry) and not os.path.islink(entry):
      shutil.rmtree(entry)
  try:
    os.rmdir(path)
  except OSError:  # a person's files are in it
    pass
