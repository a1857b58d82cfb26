"""Every flag file in experiments/ runs as shipped: a few hundred updates each, to "Done".

The files are found by listing experiments/, so a flag file added later is run
without editing this test. A file whose text is not here (the course's book is
not ours to ship) runs on a stand-in: tiny-shakespeare, which ships. The run is
shortened (--num_steps) and its report's gradient check made small; every other
setting is the file's own, so a guard or a check that stops a shipped run (the
original notebook's run was once stopped at update 3) fails here.
"""

import os

import numpy as np
import pytest
from absl import flags

from jax_charrnn import config, sweep
from jax_charrnn.config import TrainConfig

from helpers import REPO, run_module

pytestmark = pytest.mark.slow

EXPERIMENTS = os.path.join(REPO, "experiments")
FLAG_FILES = sorted(n for n in os.listdir(EXPERIMENTS) if n.endswith(".flags"))
STAND_IN = "data/tinyshakespeare.txt"
# Characters per run: enough updates to pass the early transients of every shipped
# initialisation (a few hundred for the course's model), bounded for the large batches.
CHARS = 400_000


def _parse(name: str) -> tuple[str, TrainConfig, flags.FlagValues]:
  """(module, config, flags) of a flag file, read as its command line reads it."""
  fv = flags.FlagValues()
  sweep.define_flags(fv)  # the training flags and the sweep's own
  cwd = os.getcwd()
  os.chdir(REPO)  # flag files name each other relative to the repository root
  try:
    fv(["x", f"--flagfile=experiments/{name}"])
  finally:
    os.chdir(cwd)
  is_sweep = fv["learning_rates"].present or fv["seeds"].present
  return ("jax_charrnn.sweep" if is_sweep else "jax_charrnn.train",
          config.from_flags(TrainConfig, fv), fv)


def _losses(workdir: str) -> np.ndarray:
  return np.fromfile(os.path.join(workdir, "losses.f32"), "<f4").reshape(-1, 2)[:, 0]


CASES = [(name, ()) for name in FLAG_FILES] + [
    # The notebook's run on 8 (simulated) devices, one stream each.
    ("goblet_lowercase.flags", ("--cpu_devices=8", "--batch_size=8")),
]


@pytest.mark.parametrize("name,extra", CASES, ids=[n + "".join(e) for n, e in CASES])
def test_every_shipped_flag_file_runs_to_the_end(name, extra, tmp_path):
  module, cfg, fv = _parse(name)
  args = [f"--flagfile=experiments/{name}", *extra]
  if cfg.data_path and not os.path.exists(os.path.join(REPO, cfg.data_path)):
    args.append(f"--data_path={STAND_IN}")
  batch = int(next((a.split("=")[1] for a in extra if a.startswith("--batch_size=")),
                   cfg.batch_size))
  steps = min(300, max(50, CHARS // (batch * cfg.seq_length)))
  if cfg.warmup_steps >= steps:  # the shortened run keeps the schedule's shape: warm-up, decay
    args.append(f"--warmup_steps={steps // 4}")
  workdir = tmp_path / "run"
  r = run_module(module, *args, f"--num_steps={steps}", f"--workdir={workdir}",
                 "--report_gradcheck_entries=3", timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  last = r.stdout.strip().splitlines()[-1]
  assert last.startswith("Sweep done:" if module.endswith("sweep") else "Done:"), last
  assert "diverged" not in r.stdout + r.stderr
  runs = ([str(workdir / d) for d in sorted(os.listdir(workdir))
           if os.path.isdir(workdir / d) and d.startswith("lr")]
          if module.endswith("sweep") else [str(workdir)])
  assert runs and all(os.path.exists(os.path.join(w, "report.md")) for w in runs)
  if cfg.cell == "rnn":  # the course's model: its loss falls within a few hundred updates
    for w in runs:
      losses = _losses(w)
      assert len(losses) == steps
      assert losses[-20:].mean() < 0.9 * losses[:20].mean(), (w, losses[:20], losses[-20:])


def test_an_explosion_stops_with_the_last_good_checkpoint_named(tmp_path):
  """The quickstart at --learning_rate=30 without clipping: its smooth loss passes three
  times the first loss within tens of updates and stays there (the guard's other side)."""
  r = run_module("jax_charrnn.train", "--flagfile=experiments/quickstart.flags",
                 "--learning_rate=30", "--clip=1e30", "--num_steps=3000", "--checkpoint_every=5",
                 f"--workdir={tmp_path / 'run'}", "--report_gradcheck_entries=0")
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  message = " ".join(r.stderr.split())
  assert "times the first loss" in message and "training stopped" in message, message
  assert "The last good checkpoint is step 5 " in message, message
