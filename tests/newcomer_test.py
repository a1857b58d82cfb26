"""What a newcomer sees: one count of updates in every command, clean messages, no litter.

(Issue 18: README's figures, the messages, a failed start's workdir, a finished run's lock.)
"""

import json
import os
import re

import pytest
from absl import flags

from jax_charrnn import cli

from helpers import assert_user_error, run_module

pytestmark = pytest.mark.slow

SMALL = ["--hidden_size=16", "--seq_length=10", "--steps_per_call=25", "--log_every=25",
         "--sample_every=0", "--report_every=0", "--report_gradcheck_entries=0",
         "--passage_length=20"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("newcomer")
  book = root / "book.txt"
  book.write_text("harry and hermione and ron went to hogwarts. " * 60, encoding="utf-8")
  workdir = str(root / "run")
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                 "--num_steps=150", "--val_fraction=0.2", *SMALL)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r.stdout


def test_every_command_counts_the_best_parameters_the_same_way(run):
  workdir, out = run
  done = out.strip().splitlines()[-1]
  updates = int(re.search(r"\(the parameters after ([\d,]+) updates\)", done).group(1)
                .replace(",", ""))
  phrase = f"the best parameters (after {updates:,} updates)"
  evaluated = run_module("jax_charrnn.evaluate", f"--workdir={workdir}")
  assert phrase in evaluated.stdout, evaluated.stdout
  as_json = json.loads(run_module("jax_charrnn.evaluate", f"--workdir={workdir}",
                                  "--json").stdout)
  assert as_json["updates"] == updates and as_json["checkpoint_step"] == 150
  exported = run_module("jax_charrnn.export", f"--workdir={workdir}",
                        f"--out={os.path.join(workdir, 'm.npz')}")
  assert phrase in exported.stdout, exported.stdout
  counted = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--words=harry",
                       "--num_samples=2", "--length=50")
  assert phrase in counted.stdout, counted.stdout
  report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  assert f"the parameters after {updates:,} updates" in report
  latest = json.loads(run_module("jax_charrnn.evaluate", f"--workdir={workdir}", "--json",
                                 "--which=latest").stdout)
  assert latest["updates"] == latest["checkpoint_step"] == 150


def test_a_finished_run_leaves_no_lock_and_a_failed_start_no_directory(run, tmp_path):
  workdir, _ = run
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  missing = tmp_path / "runs" / "nothing"
  assert_user_error(run_module("jax_charrnn.train", f"--data_path={tmp_path / 'absent.txt'}",
                               f"--workdir={missing}", "--num_steps=5"), "absent.txt")
  assert not missing.exists() and not missing.parent.exists()


def test_the_report_gives_losses_per_character_and_explains_the_online_loss(run):
  workdir, _ = run
  report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  assert re.search(r"Smooth loss \(summed over each chunk's 10 characters, as the course "
                   r"reports it\): .*\(\d\.\d{3} nats/char, \d\.\d{3} bits/char\)", report)
  assert "the last 20% of the text" in report and "*online*" in report


def _message(*argv):
  fv = flags.FlagValues()
  flags.DEFINE_integer("hidden_size", 100, "H.", flag_values=fv)
  flags.DEFINE_enum("cell", "rnn", ["rnn", "lstm"], "The cell.", flag_values=fv)
  try:
    fv(["train", *argv])
  except flags.Error as e:
    return cli.flag_error(e)
  raise AssertionError("no error")


def test_flag_mistakes_read_as_one_clean_sentence_each():
  typo = _message("--hidden_sise=3")
  assert "Did you mean --hidden_size? Check" in typo and "?." not in typo
  assert "ERROR" not in _message("--flagfile=/nonexistent/x.flags")
  assert "read relative to the current directory" in _message("--flagfile=nope.flags")
  assert ".." not in _message("--cell=lstn")
