"""A run's directory: checked before any work, compared with the run asked for, cleared or
repaired.

train and sweep use these before the first update:

  check_writable(workdir)      exists (or is made), can be written, a name orbax can save under;
                               checkpoints/ is a directory, the run's files are plain files
  foreign_files(workdir)       files no jax_charrnn run left there (refused without --overwrite)
  existing_runs(root, ...)     the runs an earlier train or sweep left there
  check_same_run(...)          a checkpoint of other run-defining settings or another text is
                               refused, the differences listed
  clear(workdir)               --overwrite: the earlier run's checkpoints and outputs go
  repair(workdir, step)        on resume: the run's files cut back to the checkpoint, repaired

The lock that keeps a second trainer out is lock.py's.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, Sequence

import jax

from jax_charrnn import board, checkpoint, data, errors, report, runfiles, walk
from jax_charrnn.config import TrainConfig, differences
from jax_charrnn.lock import LOCK_FILE

SWEEP_FILES = (report.SUMMARY_JSON, report.SUMMARY_MD, "sweep_loss.png")
LOGS = re.compile(r"(train|sweep)(\.process\d+)?\.log")
# Every file a run (or a sweep's root) writes or repairs in its directory.
RUN_FILES = (*runfiles.ALL_FILES, runfiles.PAGE, runfiles.PAGE_NUMBERS, *SWEEP_FILES,
             "train.log", "sweep.log")


def check_writable(workdir: str) -> None:
  """The workdir exists (or is made) and can be written; its checkpoints/ is a directory."""
  try:
    workdir.encode("utf-8")
  except UnicodeEncodeError:
    raise errors.UserError(f"The workdir name {workdir!r} is not valid UTF-8; choose a name "
                           "that is.") from None
  checkpoint.check_path(workdir)
  ckpt = checkpoint.checkpoint_dir(workdir)
  if os.path.exists(ckpt) and not os.path.isdir(ckpt):
    raise errors.UserError(
        f"{ckpt!r} is a file, where the run keeps its checkpoints (a directory). Move it away, "
        "or choose another --workdir; nothing was changed.")
  check_run_files(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    # One probe file per process: processes of one run share the workdir.
    probe = os.path.join(workdir, f".write_test.{jax.process_index()}.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise errors.UserError(f"Cannot write to the workdir {workdir!r} ({e.strerror}). Pass a "
                           "directory you can write to with --workdir.") from None


def check_run_files(workdir: str, tensorboard: bool = False) -> None:
  """Refuses what the run could not write its files through safely, under a name it writes a
  file under (metrics.jsonl, losses.f32, samples.txt, train.log, ...): a directory or anything
  but a plain file (--overwrite must not delete someone's directory), a link (the run would
  write through it, into a file outside the run), a file it cannot write (resuming would fail
  on it after the checkpoint was read); with `tensorboard`, a tensorboard/ it cannot write its
  event files in."""
  found = [(n, p) for n in RUN_FILES if (p := _problem(os.path.join(workdir, n)))]
  if found:
    (name, problem), others = found[0], [n for n, _ in found[1:]]
    raise errors.UserError(
        f"{os.path.join(workdir, name)!r} is {problem}, where the run writes its {name} (a "
        f"plain file){' (also: ' + ', '.join(others) + ')' if others else ''}. Move it away, or "
        "choose another --workdir; nothing was changed.")
  if tensorboard:
    board.check(workdir)


def _problem(path: str) -> str | None:
  """Why the run could not write its file at `path` (None: it can, or the file is not there)."""
  if not os.path.lexists(path):
    return None
  if os.path.islink(path):
    return f"a link (to {os.path.realpath(path)!r}; the run never writes through one)"
  if os.path.isdir(path):
    return "a directory"
  if not os.path.isfile(path):
    return "not a plain file"
  try:
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW))
  except OSError as e:
    return f"a file the run cannot write ({e.strerror}; make it writable)"
  return None


def foreign_files(workdir: str, own: Sequence[str] = ()) -> list[str]:
  """Files in a workdir that no jax_charrnn run left there, sorted ([] if it is empty, new, or
  a run's).

  A directory is a run's when it shows one: its lock, its checkpoints, or (a
  sweep's root) run directories with checkpoints; a run touches only its own
  file names there, so a person's notes beside them are safe. In any other
  directory every file is someone else's (a person's own samples.txt or
  report.md is theirs) except logs (train.log, sweep.log: appended to, never
  replaced) and `own` (a sweep's run directories).
  """
  if not os.path.isdir(workdir):
    return []
  names = [n for n in os.listdir(workdir) if not n.startswith(".write_test.")]
  if (LOCK_FILE in names or checkpoint.has_checkpoint(workdir)
      or any(checkpoint.has_checkpoint(os.path.join(workdir, n)) for n in names)):
    return []
  return sorted(n for n in names if n not in own and not LOGS.fullmatch(n))


def refuse_foreign(workdir: str, foreign: list[str], what: str = "run") -> None:
  """The paragraph for a workdir holding someone else's files."""
  if foreign:
    raise errors.UserError(
        f"The workdir {workdir!r} holds files that no jax_charrnn {what} left there "
        f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}). Choose another "
        f"--workdir, or pass --overwrite to {'train' if what == 'run' else 'sweep'} there anyway "
        "(the run's own file names, report.md among them, are then replaced).")


def saved_differences(meta: dict, config: TrainConfig, corpus: walk.Corpus) -> list[str]:
  """What differs between the run saved in a checkpoint and the one asked for."""
  diffs = []
  saved_vocab = meta.get("vocab", "")
  if meta.get("text") != corpus.fingerprint:
    diffs.append(f"the text ({meta.get('num_chars', '?')} characters saved from "
                 f"{meta.get('source', '?')!r}; {corpus.num_symbols} characters now, or other "
                 "content)")
  if saved_vocab != corpus.vocab.to_json():
    old = data.Vocab.from_json(saved_vocab).size if saved_vocab else "no"
    diffs.append(f"vocabulary ({old} characters saved, {corpus.vocab.size} in this text)")
  return diffs + differences(meta.get("config", {}), config)


def check_same_run(workdir: str, meta: dict, config: TrainConfig, corpus: walk.Corpus) -> None:
  """A UserError when the checkpoint's meta belongs to another run than the one asked for."""
  diffs = saved_differences(meta, config, corpus)
  if diffs:
    raise errors.UserError(
        f"The workdir {workdir!r} holds a run with other settings: {'; '.join(diffs)}. "
        "Resume it with the same settings, pass --overwrite to replace it, or choose "
        "another --workdir.")


def existing_runs(root: str, sweep: bool) -> list[str]:
  """The runs an earlier command left in `root`: a lone run's directory holds its own (["."])
  when it has a checkpoint; a sweep's root the runs its summary.json names, else its
  directories that hold a checkpoint."""
  if not sweep:
    return ["."] if checkpoint.has_checkpoint(root) else []
  summary = os.path.join(root, report.SUMMARY_JSON)
  if os.path.exists(summary):
    try:
      with open(summary, encoding="utf-8") as f:
        return [r["name"] for r in json.load(f).get("runs", [])]
    except (OSError, ValueError, KeyError, TypeError):
      pass
  if not os.path.isdir(root):
    return []
  return sorted(n for n in os.listdir(root) if checkpoint.has_checkpoint(os.path.join(root, n)))


def clear(workdir: str) -> None:
  """Deletes a run's checkpoints and outputs (event files included), for a new run there: the
  files a run writes, never a file it did not (a person's notes, their model in checkpoints/)."""
  checkpoint.remove_all(workdir)
  runfiles.remove_outputs(workdir)
  board.remove(workdir)


def clear_sweep(root: str, runs: Sequence[str]) -> None:
  """Deletes the sweep in `root` for a new sweep there: each of `runs` (an earlier sweep's and
  this one's) as `clear` deletes a run, its directory too once that leaves it empty, and the
  sweep's summary files."""
  for name in runs:
    clear(os.path.join(root, name))
    try:
      os.rmdir(os.path.join(root, name))
    except OSError:  # not there, or holding files the runs did not write: they stay
      pass
  for name in SWEEP_FILES:
    if os.path.exists(os.path.join(root, name)):
      os.remove(os.path.join(root, name))


def row_due(config: TrainConfig, step: int) -> bool:
  """Whether a run in one go writes a metrics row after update `step` (< its total): every
  --log_every updates, and with each held-out score (hostloop.log_due)."""
  return step % config.log_every == 0 or bool(
      config.val_fraction and config.eval_every and step % config.eval_every == 0)


def repair(workdir: str, step: int, warn: Callable[[str], None],
           config: TrainConfig | None = None) -> None:
  """Cuts the run's files back to the checkpoint's step, repairing torn records (and saying so);
  with `config`, a metrics row at `step` that the run in one go would not have is dropped."""
  due = True if config is None else row_due(config, step)
  for note in runfiles.repair(workdir, step, due):
    warn(note)
