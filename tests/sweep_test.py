"""Sweeps: one vmapped program equals separate runs, through the trainer's own host loop."""

import json
import os

import jax
import numpy as np
import pytest

from jax_charrnn import checkpoint, runfiles, trainer
from jax_charrnn.errors import UserError

from helpers import load_run, small_config


def _config(text_file, **kw):
  kw = {"hidden_size": 12, "steps_per_call": 32, "checkpoint_every": 0, "passage_length": 10, **kw}
  return small_config(text_file, **kw)


def test_sweep_runs_equal_separate_runs_and_write_the_same_files(text_file, tmp_path):
  # vmap sums in another order than a lone run; at lr 0.2 this tiny model
  # amplifies those 1e-16 differences ~10x every few updates, so the
  # comparison stops at 20 updates (in float64), where they are still ~1e-7;
  # a wrong learning rate or seed would differ by ~1e-2.
  cfg = _config(text_file, num_steps=20, dtype="float64", report_every=10)
  with jax.enable_x64(True):
    results = trainer.sweep(cfg, [0.05, 0.2], [0, 1], str(tmp_path / "sw"))
    assert [r.record.name for r in results] == ["lr0.05_seed0", "lr0.05_seed1", "lr0.2_seed0",
                                         "lr0.2_seed1"]
    for lr, seed in [(0.05, 1), (0.2, 0)]:
      alone = trainer.train(cfg.replace(learning_rate=lr, seed=seed),
                            str(tmp_path / f"alone{lr}{seed}"))
      run_dir = str(tmp_path / "sw" / trainer.run_name(lr, seed))
      _, params, *_ = load_run(run_dir, "latest")
      for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(alone.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
      got = next(r for r in results if r.record.name == trainer.run_name(lr, seed))
      assert got.record.smooth_loss == pytest.approx(alone.record.smooth_loss, rel=1e-8)
      # The same files, and the same metrics rows, as a lone run.
      for name in runfiles.ALL_FILES:
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
      swept_rows = runfiles.read_metrics(run_dir)
      alone_rows = runfiles.read_metrics(alone.record.workdir)
      assert [set(r) for r in swept_rows] == [set(r) for r in alone_rows]
      assert [r["step"] for r in swept_rows] == [20]
  summary = json.loads((tmp_path / "sw" / "summary.json").read_text())
  assert len(summary["runs"]) == 4
  assert (tmp_path / "sw" / "sweep_loss.png").stat().st_size > 0
  assert "| lr0.2_seed1 |" in (tmp_path / "sw" / "summary.md").read_text()
  step, meta = checkpoint.read_meta(str(tmp_path / "sw" / "lr0.2_seed1"))
  assert step == 20 and meta["config"]["learning_rate"] == 0.2 and meta["config"]["seed"] == 1


def test_a_diverging_run_is_reported_and_the_others_go_on(text_file, tmp_path, capsys):
  results = trainer.sweep(_config(text_file), [0.1, 1e38], [0], str(tmp_path / "sw"))
  by_name = {r.record.name: r for r in results}
  assert by_name["lr1e+38_seed0"].record.diverged_at is not None
  assert by_name["lr0.1_seed0"].record.diverged_at is None
  assert np.isfinite(by_name["lr0.1_seed0"].record.smooth_loss)
  table = (tmp_path / "sw" / "summary.md").read_text()
  row = next(line for line in table.splitlines() if line.startswith("| lr1e+38_seed0 |"))
  assert "diverged at update" in row and ("(before it diverged)" in row or "| – | – |" in row)
  assert "Run lr1e+38_seed0 diverged at update" in capsys.readouterr().err
  # It stopped there: the learning rate it trains on after that is 0.
  rows = runfiles.read_metrics(str(tmp_path / "sw" / "lr1e+38_seed0"))
  assert rows[-1]["learning_rate"] == 0.0
  assert runfiles.read_metrics(str(tmp_path / "sw" / "lr0.1_seed0"))[-1]["learning_rate"] > 0
  # Its best parameters (from before it diverged) are still there to sample from.
  _, params, *_ = load_run(str(tmp_path / "sw" / "lr1e+38_seed0"), "best")
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_the_same_sweep_resumes_and_another_is_refused(text_file, tmp_path):
  workdir = str(tmp_path / "sw")
  straight = trainer.sweep(_config(text_file, num_steps=40), [0.1], [0, 1], str(tmp_path / "a"))
  first = trainer.sweep(_config(text_file, num_steps=20), [0.1], [0, 1], workdir)
  assert [r.record.step for r in first] == [20, 20]
  resumed = trainer.sweep(_config(text_file, num_steps=40), [0.1], [0, 1], workdir)
  assert [r.record.step for r in resumed] == [40, 40]
  for a, b in zip(resumed, straight):
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
  (tmp_path / "sw" / "notes.txt").write_text("mine")
  with pytest.raises(UserError, match="holds another sweep"):
    trainer.sweep(_config(text_file, num_steps=40), [0.2], [0], workdir)
  with pytest.raises(UserError, match=r"hidden_size \(12 saved, 16 now\)"):
    trainer.sweep(_config(text_file, num_steps=40, hidden_size=16), [0.1], [0, 1], workdir)
  assert len(trainer.sweep(_config(text_file, num_steps=5), [0.2], [0, 1], workdir,
                           overwrite=True)) == 2
  assert sorted(os.listdir(workdir)) == ["lr0.2_seed0", "lr0.2_seed1", "notes.txt",
                                         "summary.json", "summary.md", "sweep_loss.png"]


def test_a_run_named_twice_is_refused(text_file, tmp_path):
  with pytest.raises(UserError, match="names some runs twice"):
    trainer.sweep(_config(text_file), [0.1, 0.10], [0], str(tmp_path))
