"""tools/side_by_side.py: two versions compute the same runs, or it says where they differ."""

import os

import pytest

from jax_charrnn import trainer
from tools import side_by_side

from helpers import small_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_same_run_twice_is_the_same_and_another_seed_is_not(text_file, tmp_path):
  config = small_config(text_file, num_steps=40, report_every=20, sample_length=15)
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    trainer.train(config.replace(seed=seed), str(tmp_path / name))
  assert side_by_side.differences(str(tmp_path / "a"), str(tmp_path / "b")) == []
  found = " | ".join(side_by_side.differences(str(tmp_path / "a"), str(tmp_path / "c")))
  for what in ("losses.f32", "samples.txt", "best_passage.txt", "metrics.jsonl",
               "final checkpoint's state"):
    assert what in found, found


def test_a_missing_file_is_a_difference(text_file, tmp_path):
  trainer.train(small_config(text_file, num_steps=20), str(tmp_path / "a"))
  os.makedirs(tmp_path / "empty")
  found = side_by_side.differences(str(tmp_path / "a"), str(tmp_path / "empty"))
  assert any("losses.f32 differs" in d and "missing" in d for d in found), found


def test_the_cases_are_listed_and_an_unknown_one_refused(capsys):
  assert side_by_side.main(["--list"]) == 0
  listed = capsys.readouterr().out
  for case in ("course", "resume", "lstm_regularised", "gru_adamw", "sweep"):
    assert case in listed
  assert side_by_side.main(["HEAD", "--cases=nothing"]) == 2


@pytest.mark.slow
def test_the_committed_tree_and_the_working_tree_compute_the_course_alike(capsys):
  """In CI the clean clone's HEAD is its working tree: a real run of the script end to end
  (git archive, both versions in their own processes) that must find them the same."""
  assert side_by_side.main(["HEAD", ".", "--cases=course"]) == 0, capsys.readouterr().out
  assert "every case computes the same numbers" in capsys.readouterr().out
