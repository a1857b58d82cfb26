"""The run's files (runfiles.py), its figures (plots.py) and its report (report.py, finish.py)."""

import os
import re

import numpy as np

from jax_charrnn import finish, plots, report, runfiles


def test_truncate_samples_keeps_entries_up_to_the_step_even_with_dashes_in_the_text(tmp_path):
  wd = str(tmp_path)
  runfiles.append_sample(wd, 0, "+--- a table ---+\n--- after 5 updates ---", None)
  runfiles.append_sample(wd, 1000, "words", 80.5)
  runfiles.append_sample(wd, 2000, "later words", 70.25)
  runfiles.truncate_samples(wd, 1500)
  text = open(os.path.join(wd, runfiles.SAMPLES), encoding="utf-8").read()
  assert "+--- a table ---+" in text and "--- after 1,000 updates (smooth loss 80.500) ---" in text
  assert "later words" not in text and "2,000" not in text
  runfiles.truncate_samples(wd, 0)
  text = open(os.path.join(wd, runfiles.SAMPLES), encoding="utf-8").read()
  assert text.startswith("--- before the first update ---") and "1,000" not in text


def test_metrics_round_trip_and_truncate(tmp_path):
  wd = str(tmp_path)
  runfiles.append_metrics(wd, [{"step": s, "loss": 1.0, "smooth_loss": 2.0} for s in (10, 20, 30)])
  runfiles.truncate_metrics(wd, 20)
  assert [r["step"] for r in runfiles.read_metrics(wd)] == [10, 20]
  assert plots.plot_loss(wd, runfiles.read_metrics(wd), "t") == os.path.join(wd, runfiles.LOSS_PLOT)
  assert os.path.getsize(os.path.join(wd, runfiles.LOSS_PLOT)) > 1000


def test_step_losses_append_truncate_and_plot(tmp_path):
  wd = str(tmp_path)
  runfiles.append_step_losses(wd, np.arange(5, dtype=np.float32), np.ones(5, np.float32))
  runfiles.append_step_losses(wd, np.arange(5, 9, dtype=np.float32), np.zeros(4, np.float32))
  assert runfiles.read_step_losses(wd).shape == (9, 2)
  runfiles.truncate_step_losses(wd, 6)
  np.testing.assert_array_equal(runfiles.read_step_losses(wd)[:, 0], np.arange(6))
  assert plots.plot_loss(wd, [], "t") is not None


def test_the_reports_gradient_check_reads_one_stream_of_at_most_25_characters():
  from jax_charrnn.config import TrainConfig
  long = finish.check_config(TrainConfig(cell="lstm", num_layers=2, hidden_size=512,
                                         batch_size=64, seq_length=100))
  assert (long.batch_size, long.seq_length) == (1, 25)
  assert (long.cell, long.num_layers, long.hidden_size) == ("lstm", 2, 512)  # the run's network
  short = finish.check_config(TrainConfig(batch_size=8, seq_length=10))
  assert (short.batch_size, short.seq_length) == (1, 10)


def test_a_signal_skips_the_reports_gradient_check_at_any_moment_and_the_report_says_so(
    text_file, tmp_path):
  """The report's check is the only part of the writing that can take minutes (8 for a 2 x 512
  LSTM before it read at most 25 characters); a signal once training is saved used to be
  acknowledged and then ignored until the check ended."""
  from helpers import StopAt, small_config
  from jax_charrnn import trainer, walk
  cfg = small_config(text_file, num_steps=20, report_gradcheck_entries=5)
  corpus = walk.corpus_of(cfg)
  calls = []

  def stop_after_three():
    calls.append(1)
    return len(calls) > 3

  # Inside the check, between its calls (the table's rows never come back half-made) ...
  assert finish.gradcheck_table(cfg, corpus, stop_after_three) == report.CHECK_STOPPED
  assert len(calls) == 4
  # ... and before it: no table; with no signal, the table.
  assert finish.gradcheck_table(cfg, corpus, lambda: True) == report.CHECK_STOPPED
  table = finish.gradcheck_table(cfg, corpus)
  assert "manual vs jax.grad" in table and " ok " in table and "FAIL" not in table
  # A trainer told to stop as the report begins: training was done and saved, so the run is
  # finished, not interrupted; the report is written, its check skipped, saying how to run it.
  end = trainer.train(cfg, str(tmp_path / "run"), console=StopAt("Writing the report"))
  assert not end.record.interrupted and end.record.step == 20
  with open(tmp_path / "run" / "report.md", encoding="utf-8") as f:
    text = f.read()
  assert "Skipped: Ctrl-C or SIGTERM stopped the run before the check finished." in text
  assert "--seq_length=10 --batch_size=1" in text


def test_a_slow_gradient_check_names_each_parameter_it_reaches_past_its_threshold(
    text_file, tmp_path, monkeypatch):
  """A 2 x 512 LSTM's check takes about four minutes after "Writing the report": past
  gradcheck.PROGRESS_AFTER_S seconds it names each parameter as it reaches it; before, no such
  line. The trainer's console receives them."""
  import jax
  from helpers import small_config
  from jax_charrnn import gradcheck, loop, model, trainer, walk
  from jax_charrnn.console import Console
  cfg = small_config(text_file, num_steps=20, report_gradcheck_entries=5, num_layers=2)
  corpus = walk.corpus_of(cfg)
  said = []
  monkeypatch.setattr(gradcheck, "PROGRESS_AFTER_S", 1e9)  # (the threshold's own test: below)
  finish.gradcheck_table(cfg, corpus, say=said.append)
  assert said == []
  monkeypatch.setattr(gradcheck, "PROGRESS_AFTER_S", 0.0)
  table = finish.gradcheck_table(cfg, corpus, say=said.append)
  params = loop.build_model(cfg, corpus.vocab.size).init(jax.random.key(0), loop.init_spec(cfg))
  names = [n for n, _ in model.named_leaves(params)]
  n = len(names)  # U, W, b of each layer, V, c
  assert len(said) == n == 8 and "FAIL" not in table
  for k, (line, name) in enumerate(zip(said, names)):
    assert re.fullmatch(rf"Gradient check: {re.escape(name)} \({k + 1} of {n}\), \d+ s so far"
                        r"\.\.\.", line), line

  class Recording(Console):
    def __init__(self):
      super().__init__(quiet=True)
      self.lines = []

    def say(self, text):
      super().say(text)
      self.lines.append(text)

  console = Recording()
  trainer.train(cfg, str(tmp_path / "run"), console=console)
  checked = [l for l in console.lines if l.startswith("Gradient check: ")]
  assert len(checked) == n and checked[-1].startswith(f"Gradient check: {names[-1]} ({n} of {n})")


def test_progress_lines_wait_for_their_threshold():
  from jax_charrnn import gradcheck
  now = [100.0]
  said = []
  progress = gradcheck.progress_lines(said.append, clock=lambda: now[0], after_s=5.0)
  now[0] = 104.9
  progress("W", 0, 3)
  assert said == []
  now[0] = 105.0
  progress("U", 1, 3)
  assert said == ["Gradient check: U (2 of 3), 5 s so far..."]
