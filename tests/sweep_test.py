"""Sweeps: one vmapped program equals separate runs; a diverging run does not stop the others."""

import json
import os

import jax
import numpy as np
import pytest

from jax_charrnn import checkpoint, generate, sweep, train
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError


def _config(text_file, **kw):
  base = dict(data_path=text_file, hidden_size=12, seq_length=10, num_steps=60, steps_per_call=32,
              log_every=20, sample_every=0, report_every=0, checkpoint_every=0,
              report_gradcheck_entries=0, sample_length=10, passage_length=10, dtype="float64")
  base.update(kw)
  return TrainConfig(**base)


def test_sweep_runs_equal_separate_runs(text_file, tmp_path):
  # vmap sums in another order than a lone run; at lr 0.2 this tiny model
  # amplifies those 1e-16 differences ~10x every few updates, so the
  # comparison stops at 20 updates (in float64), where they are still ~1e-7;
  # a wrong learning rate or seed would differ by ~1e-2.
  cfg = _config(text_file, num_steps=20)
  with jax.enable_x64(True):
    results = sweep.sweep(cfg, [0.05, 0.2], [0, 1], str(tmp_path / "sw"))
    assert [r.name for r in results] == ["lr0.05_seed0", "lr0.05_seed1", "lr0.2_seed0",
                                         "lr0.2_seed1"]
    for lr, seed in [(0.05, 1), (0.2, 0)]:
      alone = train.train(cfg.replace(learning_rate=lr, seed=seed),
                          str(tmp_path / f"alone{lr}{seed}"))
      params, *_ = generate.load(str(tmp_path / "sw" / sweep.run_name(lr, seed)), "latest")
      for a, b in zip(params, alone.state.params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
      got = next(r for r in results if r.learning_rate == lr and r.seed == seed)
      assert got.final_smooth_loss == pytest.approx(alone.final_smooth_loss, rel=1e-8)
  summary = json.loads((tmp_path / "sw" / "summary.json").read_text())
  assert len(summary["runs"]) == 4
  assert (tmp_path / "sw" / "sweep_loss.png").stat().st_size > 0
  assert "| lr0.2_seed1 |" in (tmp_path / "sw" / "summary.md").read_text()
  step, meta = checkpoint.read_meta(str(tmp_path / "sw" / "lr0.2_seed1"))
  assert step == 20 and meta["config"]["learning_rate"] == 0.2 and meta["config"]["seed"] == 1


def test_a_diverging_run_is_reported_and_the_others_go_on(text_file, tmp_path):
  results = sweep.sweep(_config(text_file, dtype="float32"), [0.1, 1e38], [0], str(tmp_path))
  by_lr = {r.learning_rate: r for r in results}
  assert by_lr[1e38].diverged_at is not None
  assert by_lr[0.1].diverged_at is None and np.isfinite(by_lr[0.1].final_smooth_loss)
  assert "diverged at update" in (tmp_path / "summary.md").read_text()


def test_an_existing_sweep_is_not_overwritten_silently(text_file, tmp_path):
  cfg = _config(text_file, dtype="float32", num_steps=5)
  workdir = str(tmp_path / "sw")
  sweep.sweep(cfg, [0.1], [0], workdir)
  (tmp_path / "sw" / "notes.txt").write_text("mine")
  with pytest.raises(UserError, match="already holds a sweep"):
    sweep.sweep(cfg, [0.1], [0], workdir)
  assert len(sweep.sweep(cfg, [0.2], [0, 1], workdir, overwrite=True)) == 2
  assert sorted(os.listdir(workdir)) == ["lr0.2_seed0", "lr0.2_seed1", "notes.txt", "summary.json",
                                         "summary.md", "sweep_loss.png"]


def test_a_run_named_twice_is_refused(text_file, tmp_path):
  with pytest.raises(UserError, match="names some runs twice"):
    sweep.sweep(_config(text_file, dtype="float32"), [0.1, 0.10], [0], str(tmp_path))
