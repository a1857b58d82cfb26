"""The command lines, run as a user would: exit codes and messages, never a traceback."""

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--hidden_size=16", "--seq_length=10", "--log_every=20", "--sample_every=0",
         "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=50"]


def run(module, *args, timeout=180):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=REPO)


def assert_user_error(result, *phrases, code=2):
  assert result.returncode == code, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  for phrase in phrases:
    assert phrase in " ".join(result.stderr.split()), result.stderr[-2000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One small run shared by the sampling tests."""
  root = tmp_path_factory.mktemp("cli")
  book = root / "book.txt"
  book.write_text("harry and hermione and ron went to hogwarts. " * 40, encoding="utf-8")
  workdir = str(root / "run")
  r = run("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}", "--num_steps=150",
          *SMALL)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir


def test_train_cli_writes_a_run(trained):
  for name in ("metrics.jsonl", "loss.png", "samples.txt", "best_passage.txt", "report.md"):
    assert os.path.exists(os.path.join(trained, name))


def test_sample_cli(trained):
  r = run("jax_charrnn.sample", f"--workdir={trained}", "--length=60", "--seed=3",
          "--prime=harry ", "--temperature=0.5")
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.startswith("harry ") and len(r.stdout.rstrip("\n")) == 66
  again = run("jax_charrnn.sample", f"--workdir={trained}", "--length=60", "--seed=3",
              "--prime=harry ", "--temperature=0.5")
  assert again.stdout == r.stdout  # same seed, same text


def test_sample_cli_words_of_interest(trained):
  r = run("jax_charrnn.sample", f"--workdir={trained}", "--which=latest", "--num_samples=8",
          "--length=100", "--words=harry,zebra")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "'harry': in" in r.stdout and "'zebra': in 0 of 8" in r.stdout


def test_sample_cli_prime_outside_the_vocabulary(trained):
  assert_user_error(run("jax_charrnn.sample", f"--workdir={trained}", "--prime=Harry!"),
                    "does not know: 'H', '!'")


def test_sample_cli_without_a_checkpoint(tmp_path):
  assert_user_error(run("jax_charrnn.sample", f"--workdir={tmp_path}"), "No checkpoint in")


@pytest.mark.parametrize("case", ["missing", "empty", "latin1", "short", "directory"])
def test_train_cli_bad_data(tmp_path, case):
  path = tmp_path / "book.txt"
  expected = {"missing": "does not exist", "empty": "is empty", "latin1": "not UTF-8 text",
              "short": "one training chunk needs seq_length + 1 = 11", "directory": "is a directory"}
  if case == "empty":
    path.write_bytes(b"")
  elif case == "latin1":
    path.write_bytes("caf\xe9 ".encode("latin-1") * 10)
  elif case == "short":
    path.write_text("too short")
  elif case == "directory":
    path.mkdir()
  r = run("jax_charrnn.train", f"--data_path={path}", f"--workdir={tmp_path / 'run'}", *SMALL)
  assert_user_error(r, expected[case], str(path))


def test_train_cli_bad_flags(tmp_path):
  r = run("jax_charrnn.train", "--hidden_size=0")
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "--hidden_size=0: 0 is not a positive integer" in r.stderr
  r = run("jax_charrnn.train", "--learning_rate=-0.1")
  assert r.returncode != 0 and "Traceback" not in r.stderr and "learning_rate" in r.stderr
  r = run("jax_charrnn.train", f"--flagfile={tmp_path / 'nope.flags'}")
  assert r.returncode != 0 and "Traceback" not in r.stderr and "nope.flags" in r.stderr
  r = run("jax_charrnn.train", "stray_argument")
  assert_user_error(r, "Unexpected arguments: stray_argument")


def test_train_cli_unwritable_workdir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  r = run("jax_charrnn.train", f"--workdir={blocker / 'run'}", "--num_steps=5", *SMALL)
  assert_user_error(r, "Cannot write to the workdir")


def test_train_cli_refuses_another_model_in_the_workdir(trained):
  r = run("jax_charrnn.train", f"--workdir={trained}", "--num_steps=10", *SMALL[1:],
          "--hidden_size=32")
  assert_user_error(r, "holds a run with other settings", "hidden_size (16 saved, 32 now)")


def test_ctrl_c_saves_the_state_and_resume_continues(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  args = [sys.executable, "-m", "jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
          "--num_steps=100000000", "--steps_per_call=50", "--checkpoint_every=0", *SMALL]
  proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
  deadline = time.time() + 120
  seen = []
  for line in proc.stderr:  # wait until training is under way
    seen.append(line)
    if " step 200/" in line or time.time() > deadline:
      break
  proc.send_signal(signal.SIGINT)
  _, rest = proc.communicate(timeout=120)
  log = "".join(seen) + rest
  assert proc.returncode == 130, log[-3000:]
  assert "Traceback" not in log and "Run the same command again to resume" in log
  from jax_charrnn import checkpoint  # pylint: disable=g-import-not-at-top
  step, meta = checkpoint.read_meta(str(workdir))
  assert step >= 200 and meta["step"] == step
  assert "interrupted" in (workdir / "report.md").read_text()
  # Running again resumes from there.
  r = run("jax_charrnn.train", *args[3:5], f"--num_steps={step + 30}", "--steps_per_call=50",
          *SMALL)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"Resumed from the checkpoint at step {step}" in r.stderr


def test_gradcheck_cli_passes_and_prints_fifteen_errors():
  r = run("jax_charrnn.gradcheck", "--hidden_size=12", "--seq_length=25", "--sigma=0.1")
  assert r.returncode == 0, r.stdout + r.stderr[-2000:]
  assert "PASS: all 15 relative errors <= 1e-06" in r.stdout
  assert r.stdout.count(" ok") == 15


def test_gradcheck_cli_with_a_batch_of_streams():
  r = run("jax_charrnn.gradcheck", "--hidden_size=10", "--batch_size=3", "--random_h0",
          "--loss_reduction=mean")
  assert r.returncode == 0, r.stdout + r.stderr[-2000:]
  assert "B=3" in r.stdout and "PASS: all 15" in r.stdout


def test_gradcheck_cli_fails_loudly_when_the_tolerance_is_impossible():
  r = run("jax_charrnn.gradcheck", "--hidden_size=6", "--tolerance=1e-30")
  assert r.returncode == 1 and "FAIL" in r.stdout


def test_sample_cli_on_a_sweep_root_names_its_runs(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("abc abd abe " * 100)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  r = subprocess.run([sys.executable, "-m", "jax_charrnn.sweep", f"--data_path={book}",
                      f"--workdir={tmp_path / 'sw'}", "--num_steps=4", "--hidden_size=8",
                      "--learning_rates=0.1", "--seeds=0,1", "--dtype=float64"],
                     capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
  assert r.returncode == 0, r.stderr[-2000:]
  assert_user_error(run("jax_charrnn.sample", f"--workdir={tmp_path / 'sw'}"),
                    "holds several runs", "lr0.1_seed0, lr0.1_seed1")
  r = run("jax_charrnn.sample", f"--workdir={tmp_path / 'sw' / 'lr0.1_seed1'}", "--length=20")
  assert r.returncode == 0 and len(r.stdout.strip("\n")) == 20, r.stderr[-2000:]
