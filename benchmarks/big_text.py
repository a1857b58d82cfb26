"""A text of a gigabyte: what the trainer's memory, start and speed do with the size of its text.

  python -m benchmarks.big_text                    # 1 GB (tiny-shakespeare repeated), 1 MB beside it
  python -m benchmarks.big_text --size_mb=100 --rounds=1 --json=big.json

Makes the texts (in --dir, a temporary directory by default), then runs `python -m
jax_charrnn.train` on them as a user would, each run a process of its own, its token files in
a fresh cache directory, and reports:

  the token pass        MB/s of a first run's streaming passes over the text into its token file
  time to first update  from the command's start to its first progress line (1,000 updates in),
                        a first run (the token pass included) and a later one (the token file
                        checked and used)
  peak resident memory  the process's high-water mark (its rusage)
  training speed        characters/s as the trainer reports it, the big text against the small
                        one, in turns (--rounds), medians
  the feed              the host's time to read and place one call's windows of the big text
                        (programs.Feed), against the time of the call it overlaps: an upper
                        bound of what the feed can cost the training speed, free of the run-to-run
                        noise of whole runs

The network is the course's (m = 100, one stream of 25 characters: the fastest update, so the
one whose speed the feed could slow most); --flags adds or overrides training flags.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "tinyshakespeare.txt")

_SIZE = flags.DEFINE_integer("size_mb", 1024, "Size of the big text, in MB (2^20 bytes).")
_SMALL = flags.DEFINE_integer("small_mb", 1, "Size of the small text, in MB.")
_STEPS = flags.DEFINE_integer("steps", 150_000, "Updates each training run makes (at least one "
                              "progress line's worth: 1,000).", lower_bound=1000)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Later runs of each text, timed in turns.")
_DIR = flags.DEFINE_string("dir", "", "Where the texts and token files go (default: a "
                           "temporary directory, removed at the end).")
_FLAGS = flags.DEFINE_list("flags", [], "More training flags, e.g. --flags=--cell=lstm.")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def note(text: str) -> None:
  """Progress, on stderr (the runs take minutes)."""
  sys.stderr.write(text + "\n")
  sys.stderr.flush()


def make_text(path: str, size: int) -> None:
  """`size` bytes of tiny-shakespeare repeated, written in blocks (never held whole)."""
  with open(SOURCE, "rb") as f:
    block = f.read()
  with open(path, "wb") as out:
    left = size
    while left > 0:
      out.write(block[:left])
      left -= len(block)


def train(text: str, workdir: str, cache: str, steps: int, extra: Sequence[str]) -> dict:
  """One training run as its own process: {seconds to the token file's end, to the first
  progress line, peak resident bytes, chars/s, the command's wall seconds}."""
  env = dict(os.environ, JAX_CHARRNN_CACHE_DIR=cache, PYTHONPATH=REPO)
  command = [sys.executable, "-m", "jax_charrnn.train", "--flagfile=experiments/quickstart.flags",
             f"--data_path={text}", f"--workdir={workdir}", f"--num_steps={steps}",
             "--log_every=1000", "--sample_every=0", "--report_every=0",
             "--checkpoint_every=0", "--report_gradcheck_entries=0", "--overwrite", *extra]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  marks = {}
  for line in proc.stdout:
    now = time.perf_counter() - start
    if line.startswith("Made its token file in"):
      marks["token_pass_mb_per_s"] = float(
          re.search(r"\(([\d,.]+) MB/s\)", line).group(1).replace(",", ""))
    elif line.startswith("Data:"):
      marks.setdefault("data", now)
    elif line.startswith("step "):
      marks.setdefault("first_update", now)
    elif line.startswith("Done:"):
      marks["done"] = line
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise RuntimeError(f"train exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
  speed = float(re.search(r"\(([\d,]+) chars/s\)", marks["done"]).group(1).replace(",", ""))
  return {"to_data_line_s": marks["data"], "to_first_update_s": marks["first_update"],
          "token_pass_mb_per_s": marks.get("token_pass_mb_per_s"),
          "peak_rss_bytes": usage.ru_maxrss * 1024, "chars_per_s": speed,
          "wall_s": time.perf_counter() - start}


def feed_seconds(text: str, cache: str, count: int = 1000, calls: int = 50) -> float:
  """Median seconds to read and place one call's windows (`count` updates) at random places
  of the text, as the trainer's feed does (its token file already made)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax_charrnn import programs, walk  # pylint: disable=g-import-not-at-top
  corpus = walk.load(text, seq_length=25, batch_size=1, cache_dir=cache)
  feed = programs.Feed(corpus, count)
  times = []
  for step in np.random.default_rng(0).integers(0, corpus.steps_per_epoch, calls):
    t = time.perf_counter()
    feed.take(int(step)).block_until_ready()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def measure(root: str, size_mb: int, small_mb: int, steps: int, rounds: int,
            extra: Sequence[str]) -> dict:
  """The runs above: a first run and `rounds` later runs of each text, in turns."""
  texts = {"big": os.path.join(root, f"text_{size_mb}MB.txt"),
           "small": os.path.join(root, f"text_{small_mb}MB.txt")}
  t = time.perf_counter()
  note(f"Making the texts ({size_mb:,} MB and {small_mb:,} MB) in {root}...")
  for name, mb in (("big", size_mb), ("small", small_mb)):
    make_text(texts[name], mb << 20)
  made = time.perf_counter() - t
  cache = os.path.join(root, "cache")

  def run(name: str, kind: str) -> dict:
    note(f"Training on the {name} text ({kind} run, {steps:,} updates)...")
    return train(texts[name], os.path.join(root, f"run_{name}"), cache, steps, extra)

  first = {name: run(name, "first") for name in texts}
  later = {name: [] for name in texts}
  for i in range(rounds):
    for name in texts:
      later[name].append(run(name, f"later {i + 1} of {rounds}"))
  note("Timing the feed...")
  med = lambda name, key: statistics.median(r[key] for r in later[name])
  return {
      "big_bytes": os.path.getsize(texts["big"]), "small_bytes": os.path.getsize(texts["small"]),
      "steps": steps, "making_the_texts_s": made, "first": first, "later": later,
      "token_pass_mb_per_s": first["big"]["token_pass_mb_per_s"],
      "speed_ratio_big_vs_small": med("big", "chars_per_s") / med("small", "chars_per_s"),
      "feed_seconds_per_call": feed_seconds(texts["big"], cache),
      "call_seconds": 1000 * 25 / med("big", "chars_per_s"),
      "rss_difference_bytes": (max(r["peak_rss_bytes"] for r in [first["big"], *later["big"]])
                               - max(r["peak_rss_bytes"] for r in
                                     [first["small"], *later["small"]])),
  }


def report(r: dict) -> str:
  mb = lambda b: f"{b / 2**20:,.0f} MB"
  lines = [f"Texts: {mb(r['big_bytes'])} and {mb(r['small_bytes'])} (tiny-shakespeare repeated); "
           f"{r['steps']:,} updates a run of the course's model (one stream of 25).", "",
           f"{'text':<8} {'run':<9} {'to first update':>16} {'peak memory':>12} {'chars/s':>10}"]
  for name in ("big", "small"):
    runs = [("first", r["first"][name])] + [("later", x) for x in r["later"][name]]
    for kind, x in runs:
      lines.append(f"{name:<8} {kind:<9} {x['to_first_update_s']:>14.1f} s "
                   f"{mb(x['peak_rss_bytes']):>12} {x['chars_per_s']:>10,.0f}")
  lines += ["",
            f"Token pass (the first run's, both passes): {r['token_pass_mb_per_s']:,.1f} MB/s.",
            f"Training speed, big text against small (medians of the later runs): "
            f"{r['speed_ratio_big_vs_small']:.3f}x.",
            f"Peak memory, big text against small: {r['rss_difference_bytes'] / 2**20:+,.0f} MB.",
            f"The feed: {1e3 * r['feed_seconds_per_call']:.2f} ms to read and place a call's "
            f"windows of the big text, against {1e3 * r['call_seconds']:.0f} ms for the call "
            f"(1,000 updates): {100 * r['feed_seconds_per_call'] / r['call_seconds']:.1f}%, "
            "overlapped with the device's work."]
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  root = _DIR.value or tempfile.mkdtemp(prefix="big_text_")
  os.makedirs(root, exist_ok=True)
  try:
    r = measure(root, _SIZE.value, _SMALL.value, _STEPS.value, _ROUNDS.value, _FLAGS.value)
  finally:
    if not _DIR.value:
      shutil.rmtree(root, ignore_errors=True)
  sys.stdout.write(report(r) + "\n")  # keep
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(r, f, indent=2)


if __name__ == "__main__":
  app.run(main)
