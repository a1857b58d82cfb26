"""The command lines, run as a user would: what they print, exit codes, never a traceback."""

import os
import re
import signal

import pytest

from jax_charrnn import checkpoint

from helpers import assert_user_error, read_until, run_module, start_module

pytestmark = pytest.mark.slow
SMALL = ["--hidden_size=16", "--seq_length=10", "--log_every=20", "--sample_every=0",
         "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=50"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One small run shared by the sampling tests, and what its command printed."""
  root = tmp_path_factory.mktemp("cli")
  book = root / "book.txt"
  book.write_text("harry and hermione and ron went to hogwarts. " * 40, encoding="utf-8")
  workdir = str(root / "run")
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                 "--num_steps=150", *SMALL)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r


def test_train_prints_plain_progress_on_stdout_and_logs_to_a_file(trained):
  workdir, r = trained
  lines = r.stdout.splitlines()
  # A text's first run makes its token file once, and says so first.
  assert lines[0].startswith("Reading ") and "into its token file, once" in lines[0]
  assert re.fullmatch(r"Made its token file in [\d.]+ s \([\d,.]+ MB/s\): [\d,]+ symbols, "
                      r"K = \d+, uint8 ids\.", lines[1]), lines[1]
  lines = lines[2:]
  assert lines[0].startswith("Data: ") and lines[1].startswith("Compiled the training program")
  assert lines[2].startswith("step 20/150 (epoch ") and "  smooth " in lines[2]
  assert lines[-2].startswith("Writing the report") and lines[-1].startswith("Done: 150 updates")
  assert r.stderr == ""  # no absl prefixes, no library chatter at the terminal
  log = open(os.path.join(workdir, "train.log"), encoding="utf-8").read()
  assert "step 20/150" in log and "Done: 150 updates" in log
  for name in ("metrics.jsonl", "loss.png", "samples.txt", "best_passage.txt", "report.md"):
    assert os.path.exists(os.path.join(workdir, name))


def test_help_exits_zero_and_opens_with_the_usage():
  r = run_module("jax_charrnn.train", "--help")
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.startswith("Train a character-level recurrent network on a text.")
  assert "--flagfile=experiments/quickstart.flags" in r.stdout
  assert "--hidden_size" in r.stdout and "--cell" in r.stdout and "--workdir" in r.stdout
  # The course's settings first, in sections, as --name=default; no file path as a heading.
  flags_part = r.stdout[r.stdout.index("Flags, as --name=default"):]
  headings = [line for line in flags_part.splitlines()[1:] if line and not line.startswith(" ")]
  assert headings == [
      "The text:", "The network:",
      "Optimisation (the course: AdaGrad 0.1, gradients clipped to 5, sum loss):",
      "How long, and what counts as best:", "Progress, samples, checkpoints and reports:",
      "Devices and processes:", "This command:"], headings
  assert "  --hidden_size=100\n" in r.stdout and "  --learning_rate=0.1\n" in r.stdout
  assert "(default:" not in r.stdout and ".py:" not in r.stdout
  assert r.stdout.index("--hidden_size=") < r.stdout.index("--coordinator_address=")


def test_sample_cli(trained):
  workdir, _ = trained
  args = (f"--workdir={workdir}", "--length=60", "--seed=3", "--prime=harry ", "--temperature=0.5")
  r = run_module("jax_charrnn.sample", *args)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.startswith("harry ") and len(r.stdout.rstrip("\n")) == 66
  assert run_module("jax_charrnn.sample", *args).stdout == r.stdout  # same seed, same text


def test_sample_cli_words_of_interest(trained):
  r = run_module("jax_charrnn.sample", f"--workdir={trained[0]}", "--which=latest",
                 "--num_samples=8", "--length=100", "--words=harry,zebra")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "'harry': in" in r.stdout and "'zebra': in 0 of 8" in r.stdout


def test_sample_cli_mistakes(trained, tmp_path):
  assert_user_error(run_module("jax_charrnn.sample", f"--workdir={trained[0]}", "--prime=Harry!"),
                    "does not know: 'H', '!'")
  assert_user_error(run_module("jax_charrnn.sample", f"--workdir={tmp_path}"), "No checkpoint in")


def test_train_cli_bad_data(tmp_path):
  """Every bad data file is a UserError (data_test has them all); the command line prints it."""
  path = tmp_path / "book.txt"
  path.write_bytes("caf\xe9 ".encode("latin-1") * 10)
  r = run_module("jax_charrnn.train", f"--data_path={path}", f"--workdir={tmp_path / 'run'}",
                 *SMALL)
  assert_user_error(r, "not UTF-8 text", str(path))


def test_train_cli_bad_flags(tmp_path):
  assert_user_error(run_module("jax_charrnn.train", "--hidden_size=0"),
                    "hidden_size must be at least 1; got 0")
  assert_user_error(run_module("jax_charrnn.train", f"--flagfile={tmp_path / 'nope.flags'}"),
                    "nope.flags")
  latin = tmp_path / "latin.flags"
  latin.write_bytes("# caf\xe9\n--hidden_size=8\n".encode("latin-1"))
  assert_user_error(run_module("jax_charrnn.train", f"--flagfile={latin}"), "not UTF-8 text")
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  from jax_charrnn.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="Unexpected arguments: stray_argument"):
    cli.no_extra_args(["train", "stray_argument"])


def test_train_cli_workdir_mistakes(trained, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  assert_user_error(run_module("jax_charrnn.train", f"--workdir={blocker / 'run'}",
                               "--num_steps=5", *SMALL), "Cannot write to the workdir")
  r = run_module("jax_charrnn.train", f"--workdir={trained[0]}", "--num_steps=10", *SMALL[1:],
                 "--hidden_size=32")
  assert_user_error(r, "holds a run with other settings", "hidden_size (16 saved, 32 now)")


def _interrupt_when(proc, marker, timeout=120):
  """Sends SIGINT once `marker` appears on stdout; returns (stdout, stderr) at exit."""
  seen = read_until(proc, marker, timeout)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  return seen + out, err


def test_ctrl_c_saves_the_state_and_the_same_command_resumes(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
  args = [f"--data_path={book}", f"--workdir={tmp_path / 'run'}", "--steps_per_call=50",
          "--checkpoint_every=0", *SMALL]
  out, err = _interrupt_when(start_module("jax_charrnn.train", *args, "--num_steps=100000000"),
                             "step 200/")
  assert "Traceback" not in err, err[-3000:]
  assert "Received SIGINT: saving the state" in err
  last = out.strip().splitlines()[-1]
  assert last.startswith("Stopped at step ") and last.endswith("Run the same command again "
                                                               "to resume.")
  step, meta = checkpoint.read_meta(str(tmp_path / "run"))
  assert step >= 200 and meta["step"] == step and f"Stopped at step {step};" in last
  assert "interrupted" in (tmp_path / "run" / "report.md").read_text()
  r = run_module("jax_charrnn.train", *args, f"--num_steps={step + 30}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"Resumed from the checkpoint at step {step}" in r.stdout


def test_a_sweep_stopped_with_ctrl_c_saves_every_run_and_resumes(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("abc abd abe " * 300)
  args = [f"--data_path={book}", f"--workdir={tmp_path / 'sw'}", "--hidden_size=8",
          "--seq_length=10", "--learning_rates=0.1", "--seeds=0,1", "--log_every=50",
          "--steps_per_call=50", "--checkpoint_every=0", "--sample_every=0", "--report_every=0",
          "--report_gradcheck_entries=0"]
  proc = start_module("jax_charrnn.sweep", *args, "--num_steps=100000000")
  out, err = _interrupt_when(proc, "step 200/")
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err and "every run is saved" in out
  steps = [checkpoint.read_meta(str(tmp_path / "sw" / n))[0] for n in ("lr0.1_seed0",
                                                                       "lr0.1_seed1")]
  assert steps[0] == steps[1] >= 200
  r = run_module("jax_charrnn.sweep", *args, f"--num_steps={steps[0] + 50}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"Resumed the sweep's 2 runs from their checkpoints at step {steps[0]}" in r.stdout
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  from jax_charrnn.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="holds several runs.*lr0.1_seed0, lr0.1_seed1"):
    cli.require_run(str(tmp_path / "sw"))  # what sample, evaluate and export say
  assert cli.require_run(str(tmp_path / "sw" / "lr0.1_seed1"))


def test_gradcheck_cli_passes_for_stacked_layers_and_fails_loudly(tmp_path):
  book = str(tmp_path / "book.txt")
  with open(book, "w", encoding="utf-8") as f:
    f.write("the quick brown fox jumps over the lazy dog. " * 20)
  r = run_module("jax_charrnn.gradcheck", f"--data_path={book}", "--hidden_size=8",
                 "--num_layers=2", "--batch_size=3", "--random_carry", "--loss_reduction=mean",
                 "--init_sigma=0.1")
  assert r.returncode == 0, r.stdout + r.stderr[-2000:]
  assert "2 layers of rnn, H = 8" in r.stdout and "B=3" in r.stdout
  assert "PASS: all 24 relative errors <= 1e-06" in r.stdout and r.stdout.count(" ok") == 24
  r = run_module("jax_charrnn.gradcheck", f"--data_path={book}", "--hidden_size=6",
                 "--wrong=scale")  # a hand gradient 1% too large
  assert r.returncode == 1 and "FAIL: some relative errors exceed" in r.stdout, r.stdout
  assert "hand gradient broken on purpose (scale)" in r.stdout and "Traceback" not in r.stderr
