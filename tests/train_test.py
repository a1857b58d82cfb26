"""train.train(config, workdir) end to end on tiny texts, in-process."""

import json
import os

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from jax_charrnn import checkpoint, generate, report, sweep, train  # sweep: its flags too
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from conftest import assert_trees_close

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(text_file, **overrides):
  base = dict(data_path=text_file, hidden_size=24, seq_length=10, num_steps=200,
              steps_per_call=64, log_every=20, sample_every=0, report_every=100,
              checkpoint_every=100, sample_length=30, passage_length=80,
              report_gradcheck_entries=0)
  base.update(overrides)
  return TrainConfig(**base)


def test_train_leaves_every_file_and_the_loss_falls(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  cfg = _config(text_file, num_steps=300, report_gradcheck_entries=20)
  summary = train.train(cfg, workdir)
  assert summary.steps_done == 300 and not summary.interrupted
  for name in report.ALL_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  rows = report.read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(20, 301, 20))
  per_step = report.read_step_losses(workdir)
  assert per_step.shape == (300, 2)
  assert per_step[0, 1] == per_step[0, 0]  # the smooth loss starts at the first chunk's loss
  np.testing.assert_allclose(per_step[19], [rows[0]["loss"], rows[0]["smooth_loss"]], rtol=1e-6)
  assert set(rows[0]) >= {"step", "epoch", "loss", "smooth_loss", "learning_rate", "chars_per_s",
                          "wall_time"}
  assert rows[-1]["smooth_loss"] < rows[0]["smooth_loss"] - 1.0
  samples = open(os.path.join(workdir, report.SAMPLES), encoding="utf-8").read()
  assert "before the first update" in samples and "after 100 updates" in samples
  assert "after 300 updates" in samples
  md = open(os.path.join(workdir, report.REPORT), encoding="utf-8").read()
  assert "manual vs jax.grad" in md and "FAIL" not in md and "loss.png" in md
  assert len(open(os.path.join(workdir, report.PASSAGE), encoding="utf-8").read()) >= 80
  step, meta = checkpoint.read_meta(workdir)
  assert step == 300 and meta["step"] == 300 and meta["config"]["hidden_size"] == 24


def test_resume_is_exact(text_file, tmp_path):
  """N steps, stop, resume to 2N == 2N in one go (and again across an epoch boundary)."""
  n = 90  # the tiny text has 73 chunks of 10: the resumed half crosses an epoch boundary
  straight = train.train(_config(text_file, num_steps=2 * n), str(tmp_path / "a"))
  half = str(tmp_path / "b")
  first = train.train(_config(text_file, num_steps=n), half)
  assert first.steps_done == n
  resumed = train.train(_config(text_file, num_steps=2 * n), half)
  assert resumed.steps_done == 2 * n
  assert_trees_close(resumed.state.params, straight.state.params, rtol=1e-6, atol=1e-7)
  assert_trees_close(resumed.state.opt_state, straight.state.opt_state, rtol=1e-6, atol=1e-7)
  assert_trees_close(resumed.state.best_params, straight.state.best_params, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(resumed.state.h, straight.state.h, rtol=1e-6, atol=1e-7)
  assert resumed.best_step == straight.best_step
  steps = [r["step"] for r in report.read_metrics(half)]
  assert steps == sorted(set(steps)) and steps[-1] == 2 * n
  np.testing.assert_allclose(report.read_step_losses(half),
                             report.read_step_losses(str(tmp_path / "a")), rtol=1e-6)


def test_checkpoint_restore_gives_equal_trees_and_vocab(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  summary = train.train(_config(text_file, num_steps=50), workdir)
  state, meta = checkpoint.restore(workdir, summary.state)
  assert_trees_close(state, summary.state, rtol=0, atol=0)
  params, vocab, h, x0, _ = generate.load(workdir, "best")
  assert "".join(vocab.chars) == "".join(sorted(set(open(text_file).read())))
  assert_trees_close(params, summary.state.best_params, rtol=0, atol=0)
  assert h.shape == (24,) and 0 <= x0 < vocab.size


def test_a_workdir_with_another_model_is_refused(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  train.train(_config(text_file, num_steps=20), workdir)
  with pytest.raises(UserError, match=r"hidden_size \(24 saved, 32 now\)"):
    train.train(_config(text_file, num_steps=40, hidden_size=32), workdir)
  other = tmp_path / "other.txt"
  other.write_text("completely different text with other letters: XYZ 123 " * 20)
  with pytest.raises(UserError, match="vocabulary"):
    train.train(_config(str(other), num_steps=40), workdir)
  with pytest.raises(UserError, match="already holds a run"):
    train.train(_config(text_file, num_steps=40), workdir, resume=False)
  replaced = train.train(_config(text_file, num_steps=40, hidden_size=32), workdir, overwrite=True)
  assert replaced.steps_done == 40 and replaced.state.params.W.shape == (32, 32)


def test_a_diverging_run_stops_with_a_clear_error(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(train.Diverged, match="The loss became nan at update"):
    train.train(_config(text_file, learning_rate=1e38, num_steps=100, checkpoint_every=1,
                        steps_per_call=1), workdir)
  # The last good checkpoint survives and holds finite numbers.
  step, _ = checkpoint.read_meta(workdir)
  params, *_ = generate.load(workdir, "latest")
  assert step >= 1
  assert all(np.isfinite(np.asarray(x)).all() for x in params)


def test_no_data_file_uses_the_builtin_corpus(tmp_path):
  summary = train.train(TrainConfig(hidden_size=8, num_steps=5, steps_per_call=5, log_every=5,
                                    sample_every=0, report_every=0, report_gradcheck_entries=0,
                                    sample_length=10, passage_length=10), str(tmp_path / "r"))
  assert summary.steps_done == 5
  assert summary.state.params.U.shape[1] > 60  # CPython's docs use many characters


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(REPO, "experiments"))))
def test_every_experiment_flag_file_parses(name, monkeypatch):
  monkeypatch.chdir(REPO)  # flag files name each other relative to the repository root
  with flagsaver.flagsaver():
    flags.FLAGS(["train", f"--flagfile=experiments/{name}"])
    config = train.config_from_flags()
    cpu_devices, learning_rates = flags.FLAGS.cpu_devices, flags.FLAGS.learning_rates
  assert config.hidden_size == 100 and config.seq_length == 25
  if name.startswith("goblet"):
    assert config.data_path == "goblet_book.txt" and config.epochs == 7
    assert config.learning_rate == 0.1 and config.optimizer == "adagrad"
  if name == "goblet_lowercase.flags":
    assert config.lowercase and config.best_metric == "loss"  # later flags win
  if name == "batch128.flags":
    assert config.batch_size == 128 and cpu_devices == 2
  if name == "sweep_lr_seed.flags":
    assert learning_rates == ["0.05", "0.1", "0.2"] and config.epochs == 1


def test_config_rejects_bad_values():
  with pytest.raises(UserError, match="hidden_size must be positive"):
    TrainConfig(hidden_size=0)
  with pytest.raises(UserError, match="learning_rate"):
    TrainConfig(learning_rate=-1.0)
  with pytest.raises(UserError, match="optimizer must be one of"):
    TrainConfig(optimizer="sgd")
  assert json.loads(TrainConfig().to_json())["learning_rate"] == 0.1


def test_a_half_written_checkpoint_is_never_the_latest(text_file, tmp_path):
  """orbax writes into a temporary directory and renames it when complete; a crash mid-save
  leaves only that temporary directory, which restore and resume ignore."""
  workdir = tmp_path / "run"
  train.train(_config(text_file, num_steps=40), str(workdir))
  partial = workdir / "checkpoints" / "80.orbax-checkpoint-tmp-1234"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
  step, _ = checkpoint.read_meta(str(workdir))
  assert step == 40
  resumed = train.train(_config(text_file, num_steps=60), str(workdir))
  assert resumed.steps_done == 60


def test_rerunning_a_finished_run_does_nothing_and_says_so(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  train.train(_config(text_file, num_steps=30), workdir)
  report_before = open(os.path.join(workdir, report.REPORT), encoding="utf-8").read()
  again = train.train(_config(text_file, num_steps=20), workdir)
  assert again.steps_done == 30 and again.train_seconds == 0.0
  assert open(os.path.join(workdir, report.REPORT), encoding="utf-8").read() == report_before
