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

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from jax_charrnn.errors import UserError

FORMAT_VERSION = 2  # 2: the network as stacked cells (layers, V, c) and a carry pytree
_SUBDIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), _SUBDIR)


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


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
  """Starts saving `state` and `meta` as `step` (call `mngr.wait_until_finished()` before exit)."""
  meta = dict(meta, format=FORMAT_VERSION)
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)), force=True)


def read_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """(step, meta) of the latest (or given) checkpoint, without reading any array."""
  with make_manager(workdir, read_only=True) as mngr:
    step = _pick_step(mngr, workdir, step)
    restored = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  return step, dict(restored["meta"])


def restore(workdir: str, target: Any, step: int | None = None) -> tuple[Any, dict]:
  """(state, meta) of the latest (or given) checkpoint, restored into `target`'s structure.

  Args:
    target: a pytree of arrays or `jax.ShapeDtypeStruct`s (with shardings) that
      says what to restore and onto which devices.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  with make_manager(workdir, read_only=True) as mngr:
    step = _pick_step(mngr, workdir, step)
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta.get("format", 1) != FORMAT_VERSION:
      raise UserError(
          f"The checkpoint at step {step} in {checkpoint_dir(workdir)!r} was written by another "
          f"version of jax_charrnn (checkpoint format {meta.get('format', 1)}; this version "
          f"reads format {FORMAT_VERSION}). Train it again in another --workdir.")
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(
          f"The checkpoint at step {step} in {checkpoint_dir(workdir)!r} does not match this "
          f"program's training state ({type(e).__name__}: {str(e)[:300]}). It was written by "
          "another version or with other settings; use another --workdir.") from None
  return restored["state"], dict(restored["meta"])


def remove_all(workdir: str) -> None:
  """Deletes every checkpoint under workdir (for --overwrite)."""
  shutil.rmtree(checkpoint_dir(workdir), ignore_errors=True)


def _pick_step(mngr: ocp.CheckpointManager, workdir: str, step: int | None) -> int:
  steps = mngr.all_steps()
  if not steps:
    raise UserError(f"No checkpoint in {checkpoint_dir(workdir)!r}: train first, e.g. "
                    f"`python -m jax_charrnn.train --workdir={workdir}`.")
  if step is None:
    return max(steps)
  if step not in steps:
    raise UserError(f"No checkpoint for step {step} in {checkpoint_dir(workdir)!r}; "
                    f"there are: {', '.join(map(str, sorted(steps)))}.")
  return step
