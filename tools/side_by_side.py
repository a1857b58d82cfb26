"""Two versions of the trainer, side by side: do they compute exactly the same runs?

  python -m tools.side_by_side 2a426d6                 # that commit against the working tree
  python -m tools.side_by_side 2a426d6 HEAD --cases=course,gru
  python -m tools.side_by_side --list

A refactor must not change a number. This runs the same short runs with two
versions of the package (each from its own copy of the tree: `git archive` of a
commit, or the working tree for "."), each in a fresh process, and compares
what they leave, bit for bit:

  losses.f32          every update's loss and smooth loss
  metrics.jsonl       every logged row, except its wall-clock fields
  samples.txt, best_passage.txt
  the checkpoint      the sha256 of the final training state (parameters,
                      optimiser state, carry, best copy, key) that its meta records,
                      and the meta's values (those both versions write, training
                      time aside)
  summary.json        a sweep's, training time aside

The cases cover the course's RNN (and a resume that splits it in two), an LSTM
with every regulariser, a schedule and a held-out split, a GRU on the optimiser
that runs on trees, a sweep, and a run that the old version starts and each
version resumes (the new one must read the old one's checkpoints). It exits 1
and names each difference when any case differs; 0 when every case is the
same. Timings are not compared, nor the console's wording.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

QUIET = ["--sample_every=0", "--report_gradcheck_entries=0", "--log_every=50"]
SHAKESPEARE = "--data_path=data/tinyshakespeare.txt"

# name: (command, [flags, ...] per session, run directories under the workdir ("." = itself))
CASES = {
    "course": ("train", [["--flagfile=experiments/quickstart.flags", "--num_steps=2000",
                          "--report_every=500", *QUIET]], ["."]),
    "resume": ("train", [["--flagfile=experiments/quickstart.flags", f"--num_steps={n}",
                          "--report_every=500", *QUIET] for n in (700, 2000)], ["."]),
    "lstm_regularised": ("train", [[
        SHAKESPEARE, "--cell=lstm", "--num_layers=2", "--hidden_size=48", "--batch_size=8",
        "--seq_length=32", "--optimizer=adam", "--learning_rate=0.003", "--lr_schedule=cosine",
        "--warmup_steps=20", "--min_lr_ratio=0.1", "--clip_mode=global_norm", "--clip=1",
        "--dropout=0.2", "--dropout_mode=locked", "--input_dropout=0.1", "--weight_drop=0.2",
        "--val_fraction=0.1", "--eval_every=100", "--best_metric=val_bpc", "--num_steps=300",
        "--report_every=100", "--steps_per_call=64", *QUIET]], ["."]),
    "gru_adamw": ("train", [[
        SHAKESPEARE, "--cell=gru", "--num_layers=2", "--hidden_size=40", "--batch_size=4",
        "--seq_length=20", "--optimizer=adamw", "--weight_decay=0.01", "--learning_rate=0.002",
        "--lr_schedule=step", "--lr_decay=0.5", "--lr_decay_every=100", "--dropout=0.1",
        "--init_dist=pytorch", "--val_fraction=0.05", "--eval_every=150", "--num_steps=300",
        "--report_every=100", *QUIET]], ["."]),
    "sweep": ("sweep", [["--flagfile=experiments/quickstart.flags", "--num_steps=600",
                         "--learning_rates=0.05,0.1", "--seeds=0,1", "--report_every=300",
                         *QUIET]],
              ["lr0.05_seed0", "lr0.05_seed1", "lr0.1_seed0", "lr0.1_seed1"]),
    # The old version's first session on both sides: the new one resumes the old checkpoint.
    "resume_from_old": ("train", [[SHAKESPEARE, "--cell=lstm", "--hidden_size=32",
                                   "--batch_size=4", "--optimizer=adam", "--learning_rate=0.003",
                                   "--val_fraction=0.1", "--eval_every=100", f"--num_steps={n}",
                                   "--report_every=100", *QUIET] for n in (200, 400)], ["."]),
}
FIRST_SESSION_BY_OLD = {"resume_from_old"}
CLOCK_FIELDS = ("wall_time", "chars_per_s")  # in metrics rows: when, and how fast; not what


def tree_of(rev: str, into: str, repo: str) -> str:
  """A copy of the tree at `rev` (a commit, or "." for the working tree as it is)."""
  if rev == ".":
    return repo
  os.makedirs(into)
  archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", rev],
                           capture_output=True, check=True).stdout
  subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
  return into


def run_case(trees: Sequence[str], case: str, workdir: str) -> None:
  """Runs session k of `case` with the package of trees[k] (the last tree for the rest), from
  that tree (flag files and data are read relative to it), in `workdir` (token files beside
  it, not in the user's cache)."""
  command, sessions, _ = CASES[case]
  for k, flags in enumerate(sessions):
    tree = trees[min(k, len(trees) - 1)]
    env = dict(os.environ, PYTHONPATH=tree,
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
               JAX_CHARRNN_CACHE_DIR=f"{workdir}.tokens")
    r = subprocess.run([sys.executable, "-m", f"jax_charrnn.{command}", *flags,
                        f"--workdir={workdir}"], cwd=tree, env=env, capture_output=True,
                       text=True)
    if r.returncode:
      raise RuntimeError(f"{case} in {tree}: exit {r.returncode}\n{r.stderr[-3000:]}")


def _read(path: str) -> bytes | None:
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return f.read()


def _metrics(path: str) -> list[dict] | None:
  raw = _read(path)
  if raw is None:
    return None
  rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
  return [{k: v for k, v in row.items() if k not in CLOCK_FIELDS} for row in rows]


def _final_meta(run_dir: str) -> dict | None:
  ckpt = os.path.join(run_dir, "checkpoints")
  steps = sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) if os.path.isdir(ckpt) else []
  if not steps:
    return None
  with open(os.path.join(ckpt, str(steps[-1]), "meta", "metadata"), encoding="utf-8") as f:
    return json.load(f)


def _meta_differences(a: dict | None, b: dict | None) -> list[str]:
  """The final checkpoints' state checksums, and the meta values both versions write (a newer
  version may add keys and settings; it may not change an old one's value)."""
  if a is None or b is None:
    return [] if a is b else ["one side has no checkpoint"]
  out = []
  if (a.get("step"), a.get("checksum")) != (b.get("step"), b.get("checksum")):
    out.append(f"the final checkpoint's state differs (step {a.get('step')}: "
               f"{a.get('checksum')} against step {b.get('step')}: {b.get('checksum')})")
  # data_file: the text's absolute path, which is each version's own copy of the tree.
  for key in sorted(set(a) & set(b) - {"checksum", "train_seconds", "format", "data_file"}):
    old, new = a[key], b[key]
    if key == "config":
      old, new = ({k: v for k, v in c.items() if k in a[key] and k in b[key]} for c in (old, new))
    if old != new:
      out.append(f"the checkpoint's {key} differs ({str(old)[:80]} against {str(new)[:80]})")
  return out


def differences(old_dir: str, new_dir: str) -> list[str]:
  """What differs between two runs' directories (empty: the same run, bit for bit)."""
  out = []
  for name in ("losses.f32", "samples.txt", "best_passage.txt"):
    a, b = _read(os.path.join(old_dir, name)), _read(os.path.join(new_dir, name))
    if a != b:
      out.append(f"{name} differs ({'missing' if a is None else len(a)} bytes against "
                 f"{'missing' if b is None else len(b)})")
  a, b = _metrics(os.path.join(old_dir, "metrics.jsonl")), _metrics(
      os.path.join(new_dir, "metrics.jsonl"))
  if a != b:
    first = next((i for i, (x, y) in enumerate(zip(a or [], b or [])) if x != y), None)
    out.append("metrics.jsonl differs" + ("" if first is None else
                                          f" from row {first}: {a[first]} against {b[first]}"))
  out += _meta_differences(_final_meta(old_dir), _final_meta(new_dir))
  return out


def _summary(root: str) -> dict | None:
  """A sweep's summary.json without its training time."""
  raw = _read(os.path.join(root, "summary.json"))
  if raw is None:
    return None
  summary = json.loads(raw)
  summary.pop("train_seconds", None)
  return summary


def compare(old: str, new: str, cases: Sequence[str], repo: str, scratch: str) -> dict[str, list]:
  """{case: its differences} for the cases run with the trees at `old` and `new`."""
  trees = {side: tree_of(rev, os.path.join(scratch, f"tree_{side}"), repo)
           for side, rev in (("old", old), ("new", new))}
  found = {}
  for case in cases:
    workdirs = {side: os.path.join(scratch, f"{case}_{side}") for side in trees}
    for side, tree in trees.items():
      first = trees["old"] if case in FIRST_SESSION_BY_OLD else tree
      run_case([first, tree], case, workdirs[side])
    found[case] = [f"{run}: {d}" for run in CASES[case][2]
                   for d in differences(os.path.join(workdirs["old"], run),
                                        os.path.join(workdirs["new"], run))]
    summaries = [_summary(workdirs[side]) for side in ("old", "new")]
    if summaries[0] is not None and summaries[1] is not None:
      shared = set(summaries[0]["config"]) & set(summaries[1]["config"])
      for s in summaries:
        s["config"] = {k: v for k, v in s["config"].items() if k in shared}
    if summaries[0] != summaries[1]:
      found[case].append("summary.json differs")
  return found


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("old", nargs="?", help="a commit (or . for the working tree)")
  parser.add_argument("new", nargs="?", default=".", help="a commit, or . (the default)")
  parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
  parser.add_argument("--list", action="store_true", help="list the cases and exit")
  parser.add_argument("--keep", default="", help="keep the runs in this directory")
  args = parser.parse_args(argv)
  if args.list or not args.old:
    for name, (command, sessions, _) in CASES.items():
      print(f"{name:18} {command}: " + " | then | ".join(" ".join(s) for s in sessions))
    return 0 if args.list else 2
  cases = [c for c in args.cases.split(",") if c]
  unknown = [c for c in cases if c not in CASES]
  if unknown:
    print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}",
          file=sys.stderr)
    return 2
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  scratch = args.keep or tempfile.mkdtemp(prefix="side_by_side_")
  try:
    found = compare(args.old, args.new, cases, repo, scratch)
  finally:
    if not args.keep:
      shutil.rmtree(scratch, ignore_errors=True)
  for case, diffs in found.items():
    print(f"{case:18} {'same' if not diffs else 'DIFFERENT'}")
    for d in diffs:
      print(f"    {d}")
  same = not any(found.values())
  print(f"{args.old} and {args.new}: " + ("every case computes the same numbers."
                                           if same else "they differ."))
  return 0 if same else 1


if __name__ == "__main__":
  sys.exit(main())
