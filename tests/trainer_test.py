"""trainer.train(config, workdir) end to end on tiny texts, in-process."""

import os

import jax
import numpy as np
import pytest

from jax_charrnn import checkpoint, generate, runfiles, trainer
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import assert_trees_close, load_run


def _config(text_file, **overrides):
  base = dict(data_path=text_file, hidden_size=24, seq_length=10, num_steps=200,
              steps_per_call=64, log_every=20, sample_every=0, report_every=100,
              checkpoint_every=100, sample_length=30, passage_length=80,
              report_gradcheck_entries=0)
  base.update(overrides)
  return TrainConfig(**base)


def test_train_leaves_every_file_and_the_loss_falls(text_file, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  cfg = _config(text_file, num_steps=300, report_gradcheck_entries=20, sample_every=100)
  summary = trainer.train(cfg, workdir)
  assert summary.record.step == 300 and not summary.record.interrupted
  for name in runfiles.ALL_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  rows = runfiles.read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(20, 301, 20))
  per_step = runfiles.read_step_losses(workdir)
  assert per_step.shape == (300, 2)
  assert per_step[0, 1] == per_step[0, 0]  # the smooth loss starts at the first chunk's loss
  np.testing.assert_allclose(per_step[19], [rows[0]["loss"], rows[0]["smooth_loss"]], rtol=1e-6)
  assert set(rows[0]) >= {"step", "epoch", "loss", "smooth_loss", "loss_per_char",
                          "learning_rate", "chars_per_s", "wall_time"}
  assert rows[0]["loss_per_char"] == pytest.approx(rows[0]["loss"] / 10)
  assert rows[-1]["smooth_loss"] < rows[0]["smooth_loss"] - 1.0
  samples = open(os.path.join(workdir, runfiles.SAMPLES), encoding="utf-8").read()
  assert "before the first update" in samples and "after 100 updates" in samples
  assert "after 300 updates" in samples
  md = open(os.path.join(workdir, runfiles.REPORT), encoding="utf-8").read()
  assert "manual vs jax.grad" in md and "FAIL" not in md and "loss.png" in md
  assert "1 layer of rnn, H = 24" in md and "| hidden_size | `24` |" in md
  assert len(open(os.path.join(workdir, runfiles.PASSAGE), encoding="utf-8").read()) >= 80
  step, meta = checkpoint.read_meta(workdir)
  assert step == 300 and meta["step"] == 300 and meta["config"]["hidden_size"] == 24
  # What a person reads: plain progress lines on stdout, in order, then the report and Done.
  out = capsys.readouterr().out.splitlines()
  progress = [line for line in out if line.startswith("step ")]
  assert progress[0].startswith("step 20/300 (epoch ") and " loss " in progress[0]
  assert " smooth " in progress[0] and " chars/s  ETA " in progress[0]
  assert len(progress) == 15 and "sample at step 100:" in out
  assert out[-2].startswith("Writing the report") and out[-1].startswith("Done: 300 updates")


def test_resume_is_exact_and_training_time_adds_up(text_file, tmp_path):
  """N steps, stop, resume to 2N == 2N in one go (across an epoch boundary)."""
  n = 90  # the tiny text has 140 chunks of 10 for one stream: use 2 streams, 70 chunks each
  straight = trainer.train(_config(text_file, num_steps=2 * n, batch_size=2), str(tmp_path / "a"))
  half = str(tmp_path / "b")
  first = trainer.train(_config(text_file, num_steps=n, batch_size=2), half)
  assert first.record.step == n
  resumed = trainer.train(_config(text_file, num_steps=2 * n, batch_size=2), half)
  assert resumed.record.step == 2 * n
  assert_trees_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)
  assert resumed.record.best_step == straight.record.best_step
  steps = [r["step"] for r in runfiles.read_metrics(half)]
  assert steps == sorted(set(steps)) and steps[-1] == 2 * n
  np.testing.assert_allclose(runfiles.read_step_losses(half),
                             runfiles.read_step_losses(str(tmp_path / "a")), rtol=1e-6)
  assert resumed.record.timing.total == pytest.approx(first.record.timing.session +
                                                      resumed.record.timing.session)
  md = open(os.path.join(half, runfiles.REPORT), encoding="utf-8").read()
  assert f"{resumed.record.timing.total:.1f} s in all sessions" in md


def test_checkpoint_restore_gives_equal_trees_and_vocab(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  summary = trainer.train(_config(text_file, num_steps=50), workdir)
  state, meta = checkpoint.restore(workdir, summary.state)
  assert_trees_close(state, summary.state, rtol=0, atol=0)
  net, params, vocab, carry, x0, _ = load_run(workdir, "best")
  assert "".join(vocab.chars) == "".join(sorted(set(open(text_file).read())))
  assert_trees_close(params, summary.state.best_params, rtol=0, atol=0)
  assert carry[0].shape == (24,) and 0 <= x0 < vocab.size and net.hidden_size == 24


def test_a_workdir_with_another_model_is_refused(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=20), workdir)
  with pytest.raises(UserError, match=r"hidden_size \(24 saved, 32 now\)"):
    trainer.train(_config(text_file, num_steps=40, hidden_size=32), workdir)
  with pytest.raises(UserError, match=r"num_layers \(1 saved, 2 now\)"):
    trainer.train(_config(text_file, num_steps=40, num_layers=2), workdir)
  other = tmp_path / "other.txt"
  other.write_text("completely different text with other letters: XYZ 123 " * 20)
  with pytest.raises(UserError, match="vocabulary"):
    trainer.train(_config(str(other), num_steps=40), workdir)
  with pytest.raises(UserError, match="already holds a run"):
    trainer.train(_config(text_file, num_steps=40), workdir, resume=False)
  replaced = trainer.train(_config(text_file, num_steps=40, hidden_size=32), workdir,
                           overwrite=True)
  assert replaced.record.step == 40 and replaced.state.params.layers[0].W.shape == (32, 32)


def test_a_diverging_run_stops_with_a_clear_error(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(trainer.Diverged, match="The loss became nan at update"):
    trainer.train(_config(text_file, learning_rate=1e38, num_steps=100, checkpoint_every=1,
                          steps_per_call=1), workdir)
  # The last good checkpoint survives and holds finite numbers.
  step, _ = checkpoint.read_meta(workdir)
  _, params, *_ = load_run(workdir, "latest")
  assert step >= 1
  assert all(np.isfinite(np.asarray(x)).all() for x in params.layers[0] + (params.V, params.c))


def test_no_data_file_uses_the_builtin_corpus(tmp_path):
  summary = trainer.train(TrainConfig(hidden_size=8, num_steps=5, steps_per_call=5, log_every=5,
                                      sample_every=0, report_every=0, report_gradcheck_entries=0,
                                      sample_length=10, passage_length=10), str(tmp_path / "r"))
  assert summary.record.step == 5
  assert summary.state.params.layers[0].U.shape[1] > 60  # CPython's docs use many characters


def test_a_half_written_checkpoint_is_never_the_latest(text_file, tmp_path):
  """orbax writes into a temporary directory and renames it when complete; a crash mid-save
  leaves only that temporary directory, which restore and resume ignore."""
  workdir = tmp_path / "run"
  trainer.train(_config(text_file, num_steps=40), str(workdir))
  partial = workdir / "checkpoints" / "80.orbax-checkpoint-tmp-1234"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
  step, _ = checkpoint.read_meta(str(workdir))
  assert step == 40
  resumed = trainer.train(_config(text_file, num_steps=60), str(workdir))
  assert resumed.record.step == 60


def test_rerunning_a_finished_run_does_nothing_but_restores_missing_outputs(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=30), workdir)
  report_path = os.path.join(workdir, runfiles.REPORT)
  before = open(report_path, encoding="utf-8").read()
  again = trainer.train(_config(text_file, num_steps=20), workdir)
  assert again.record.step == 30 and again.record.timing.session == 0.0
  assert open(report_path, encoding="utf-8").read() == before
  # Killed after the last checkpoint but before the outputs: the rerun writes them.
  os.remove(report_path)
  os.remove(os.path.join(workdir, runfiles.LOSS_PLOT))
  trainer.train(_config(text_file, num_steps=30), workdir)
  assert "Status: **finished**" in open(report_path, encoding="utf-8").read()
  assert os.path.exists(os.path.join(workdir, runfiles.LOSS_PLOT))


def test_float64_needs_x64_switched_on_by_the_caller(text_file, tmp_path):
  """Library code never flips JAX's global 64-bit switch; the entry points do."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.config.jax_enable_x64:
    pytest.skip("64-bit JAX is already on in this process")
  with pytest.raises(UserError, match="needs 64-bit JAX"):
    trainer.train(_config(text_file, dtype="float64", num_steps=5), str(tmp_path / "run"))
  assert not jax.config.jax_enable_x64


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_every_cell_trains_resumes_exactly_and_samples(cell, text_file, tmp_path):
  """Two layers with dropout (a fresh mask every update from the run's key and the step):
  N + N updates equal 2N in one go."""
  cfg = dict(cell=cell, num_layers=2, dropout=0.25, hidden_size=16, batch_size=2,
             optimizer="adam", learning_rate=3e-3, init_dist="pytorch", val_fraction=0.1,
             eval_every=40)
  straight = trainer.train(_config(text_file, num_steps=60, **cfg), str(tmp_path / "a"))
  half = str(tmp_path / "b")
  trainer.train(_config(text_file, num_steps=40, **cfg), half)
  resumed = trainer.train(_config(text_file, num_steps=60, **cfg), half)
  assert_trees_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)
  rows = runfiles.read_metrics(half)
  assert rows[-1]["smooth_loss"] < rows[0]["smooth_loss"] and "val_bpc" in rows[-1]
  net, params, vocab, carry, x0, _ = load_run(half, "latest")
  assert net.cell.name == cell and net.num_layers == 2 and net.dropout == 0.25
  text, = generate.generate(net, params, vocab, carry, x0, 30, jax.random.key(0), prime="the ")
  assert text.startswith("the ") and len(text) == 34
  md = open(os.path.join(half, runfiles.REPORT), encoding="utf-8").read()
  assert f"2 layers of {cell}, H = 16, dropout 0.25" in md and " parameters;" in md
  with pytest.raises(UserError, match=rf"cell \('{cell}' saved, 'rnn' now\)"):
    trainer.train(_config(text_file, num_steps=70, **dict(cfg, cell="rnn")), half)
