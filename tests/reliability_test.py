"""Nothing lost at any moment, damage detected and recovered, one trainer per workdir.

One test (or a few) per class of what an adversarial user did to the trainer:
1 two trainers on one workdir, 2 signals in quick succession, 3 a kill after the
last checkpoint, 4 damaged checkpoints, 5 damaged run files, 6 a full disk or a
file where checkpoints/ belongs, 7 input edges, 8 long samples and Ctrl-C, 9 a
loss that explodes without becoming NaN.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jax_charrnn import checkpoint, runfiles, trainer
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import REPO, assert_user_error, read_until, run_module, small_config, start_module

SMALL = ["--hidden_size=16", "--seq_length=10", "--log_every=20", "--sample_every=0",
         "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=50"]


def _config(text_file, **kw):
  return small_config(text_file, **kw)


def _start(*args):
  return start_module("jax_charrnn.train", *args)




@pytest.fixture()
def book(tmp_path):
  path = tmp_path / "book.txt"
  path.write_text("the cat sat on the mat. " * 300, encoding="utf-8")
  return str(path)


# ---- 1. two trainers on one workdir ----

@pytest.mark.slow
def test_a_second_trainer_is_refused_and_kill_9_leaves_no_stale_lock(book, tmp_path):
  args = [f"--data_path={book}", f"--workdir={tmp_path / 'run'}", "--steps_per_call=20",
          "--checkpoint_every=40", *SMALL]
  first = _start(*args, "--num_steps=100000000")
  try:
    read_until(first, "step 100/")
    second = run_module("jax_charrnn.train", *args, "--num_steps=50", "--learning_rate=0.05")
    assert_user_error(second, "is in use by process", str(first.pid))
    # Reading a busy workdir works.
    r = run_module("jax_charrnn.sample", f"--workdir={tmp_path / 'run'}", "--length=20")
    assert r.returncode == 0, r.stderr[-2000:]
  finally:
    first.kill()  # kill -9: the kernel drops its lock
    first.communicate(timeout=60)
  step = checkpoint.all_steps(str(tmp_path / "run"))[-1]
  r = run_module("jax_charrnn.train", *args, f"--num_steps={step + 20}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"Resumed from the checkpoint at step {step}" in r.stdout


def test_the_lock_is_held_for_the_run_and_released_after(text_file, tmp_path):
  from jax_charrnn.lock import WorkdirLock  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with WorkdirLock(workdir):
    with pytest.raises(UserError, match=f"is in use by process {os.getpid()}"):
      trainer.train(_config(text_file), workdir)
  assert trainer.train(_config(text_file), workdir).record.step == 60


# ---- 2. signals in quick succession ----

@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_does_not_cut_the_save_short(book, tmp_path, signals):
  args = [f"--data_path={book}", f"--workdir={tmp_path / 'run'}", "--steps_per_call=20",
          "--checkpoint_every=0", "--num_steps=100000000", *SMALL]
  proc = _start(*args)
  out = read_until(proc, "step 200/")
  proc.send_signal(signals[0])
  # The second signal once the first was heard: two signals sent before the process runs its
  # handler are one signal to the kernel (a busy machine made this test flaky).
  first = ""
  while "Received" not in first:
    first = proc.stderr.readline()
    assert first, "the process ended without hearing the signal"
  proc.send_signal(signals[1])
  rest, err = proc.communicate(timeout=120)
  out, err = out + rest, first + err
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err and "already stopping; saving" in err
  last = out.strip().splitlines()[-1]
  step = checkpoint.all_steps(str(tmp_path / "run"))[-1]
  assert last.startswith(f"Stopped at step {step};")  # what it says was saved, was saved
  assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "*tmp*"))


# ---- 3. killed after the last checkpoint, before the outputs ----

def test_finishing_is_idempotent(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file), workdir)
  for name in (runfiles.REPORT, runfiles.LOSS_PLOT, runfiles.PASSAGE):
    os.remove(os.path.join(workdir, name))
  trainer.train(_config(text_file), workdir)
  for name in (runfiles.REPORT, runfiles.LOSS_PLOT, runfiles.PASSAGE):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name


# ---- 4. damaged checkpoints ----

def _array_files(workdir, step):
  """The data files of a step's arrays (orbax's OCDBT store)."""
  files = glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                    recursive=True)
  assert files
  return files


def _overwrite(path, count=2000):
  """Flips every bit of up to `count` bytes from a third into a file (always a change)."""
  start = os.path.getsize(path) // 3
  with open(path, "r+b") as f:
    f.seek(start)
    data = f.read(count)
    f.seek(start)
    f.write(bytes(b ^ 0xFF for b in data))


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "meta", "stray"])
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(damage, text_file, tmp_path,
                                                               capsys):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=40), workdir)
  assert checkpoint.all_steps(workdir) == [20, 40]
  damaged = 40
  if damage == "truncated":
    for path in _array_files(workdir, 40):
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  elif damage == "overwritten":
    for path in _array_files(workdir, 40):
      _overwrite(path)
  elif damage == "meta":
    with open(os.path.join(workdir, "checkpoints", "40", "meta", "metadata"), "w") as f:
      f.write('{"step": 40, "vocab": ')
  else:
    os.makedirs(os.path.join(workdir, "checkpoints", "45"))
    damaged = 45
  capsys.readouterr()
  resumed = trainer.train(_config(text_file, num_steps=60), workdir)
  err = capsys.readouterr().err
  assert f"The checkpoint at step {damaged} in" in err and "using step" in err
  assert resumed.record.step == 60
  if damage != "stray":
    assert "is damaged" in err and "using step 20 instead" in err


def test_no_intact_checkpoint_is_a_paragraph_never_a_wrong_resume(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=40), workdir)
  for step in (20, 40):
    for path in _array_files(workdir, step):
      _overwrite(path)
  with pytest.raises(UserError, match="No intact checkpoint"):
    trainer.train(_config(text_file, num_steps=60), workdir)


# ---- 5. damaged run files ----

def test_damaged_run_files_are_repaired_on_resume(text_file, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=40), workdir)
  with open(os.path.join(workdir, runfiles.METRICS), "a", encoding="utf-8") as f:
    f.write("garbage that is no row\n{\"step\": 4")  # a junk line and a torn last record
  with open(os.path.join(workdir, runfiles.SAMPLES), "ab") as f:
    f.write(b"\xff\xfe not utf-8\n")
  path = os.path.join(workdir, runfiles.STEP_LOSSES)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 3)  # a torn last pair
  capsys.readouterr()
  resumed = trainer.train(_config(text_file, num_steps=60), workdir)
  err = capsys.readouterr().err
  assert resumed.record.step == 60
  assert "2 line(s) that were not a metrics row" in err and "not UTF-8" in err
  assert "torn record" in err
  assert [r["step"] for r in runfiles.read_metrics(workdir)] == [20, 40, 60]
  assert runfiles.read_step_losses(workdir).shape == (60, 2)


def test_a_deleted_losses_file_keeps_the_steps_in_place(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=40), workdir)
  os.remove(os.path.join(workdir, runfiles.STEP_LOSSES))
  trainer.train(_config(text_file, num_steps=60), workdir)
  losses = runfiles.read_step_losses(workdir)
  assert losses.shape == (60, 2)
  assert np.isnan(losses[:40]).all() and np.isfinite(losses[40:]).all()


# ---- 6. a full disk; a file where checkpoints/ belongs ----

def test_a_file_where_checkpoints_belong_is_a_paragraph_and_deletes_nothing(text_file, tmp_path):
  workdir = tmp_path / "run"
  trainer.train(_config(text_file, num_steps=20), str(workdir))
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(workdir / "checkpoints")
  (workdir / "checkpoints").write_text("not a directory")
  before = (workdir / runfiles.REPORT).read_text()
  with pytest.raises(UserError, match="is a file, where the run keeps its checkpoints"):
    trainer.train(_config(text_file, num_steps=40), str(workdir))
  assert (workdir / runfiles.REPORT).read_text() == before


@pytest.mark.slow
def test_a_full_disk_is_a_paragraph_and_resume_after_freeing_space_works(book, tmp_path):
  mount = tmp_path / "small"
  mount.mkdir()
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
                     capture_output=True, text=True)
  if r.returncode:
    pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()[:100]})")
  try:
    filler = mount / "filler"
    args = [f"--data_path={book}", f"--workdir={mount / 'run'}", "--hidden_size=64",
            "--seq_length=10", "--log_every=20", "--sample_every=0", "--report_every=0",
            "--report_gradcheck_entries=0", "--checkpoint_every=20", "--steps_per_call=20"]
    cfg = TrainConfig(data_path=book, hidden_size=64, seq_length=10, log_every=20, sample_every=0,
                      report_every=0, report_gradcheck_entries=0, checkpoint_every=20,
                      steps_per_call=20, num_steps=40)
    trainer.train(cfg, str(mount / "run"))
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 20_000))  # leave less than a checkpoint
    r = run_module("jax_charrnn.train", *args, "--num_steps=100")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "No space left on device" in " ".join(r.stderr.split())
    assert 40 in checkpoint.all_steps(str(mount / "run"))  # nothing older was deleted
    filler.unlink()
    assert trainer.train(cfg.replace(num_steps=100), str(mount / "run")).record.step == 100
  finally:
    subprocess.run(["umount", str(mount)], capture_output=True)


# ---- 7. input edges ----

def test_a_directory_with_someone_elses_files_is_not_overwritten(text_file, tmp_path):
  workdir = tmp_path / "theirs"
  workdir.mkdir()
  (workdir / "report.md").write_text("my thesis")
  with pytest.raises(UserError, match="holds files that no jax_charrnn run left there"):
    trainer.train(_config(text_file), str(workdir))
  assert (workdir / "report.md").read_text() == "my thesis"
  assert trainer.train(_config(text_file), str(workdir), overwrite=True).record.step == 60


def test_a_run_too_large_for_the_memory_is_refused_with_the_number(text_file, tmp_path):
  with pytest.raises(UserError, match=r"needs about [\d,.]+ GiB"):
    trainer.train(_config(text_file, hidden_size=200_000), str(tmp_path / "run"))


@pytest.mark.parametrize("define,arg,message", [
    ("sample", "--temperature=nan", "temperature must be a number"),
    ("sample", "--top_p=nan", "top_p must be a number"),
    ("sample", "--length=-1", "length must be at least 1"),
    ("gradcheck", "--step=inf", "step must be at most"),
    ("gradcheck", "--tolerance=nan", "tolerance must be a number"),
    ("train", "--init_sigma=inf", "init_sigma must be at most"),
])
def test_nan_and_infinite_flag_values_are_refused_at_parse_time(define, arg, message):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import gradcheck, sample, train  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  {"sample": sample.define_flags, "gradcheck": gradcheck.define_flags,
   "train": train.define_flags}[define](fv)
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    fv(["prog", arg])


@pytest.mark.slow
def test_workdir_names(tmp_path, book):
  r = run_module("jax_charrnn.train", f"--data_path={book}", "--workdir=~/jax_charrnn_tilde_test",
                 "--num_steps=5", *SMALL)
  assert r.returncode == 0, r.stderr[-2000:]
  home = os.path.expanduser("~/jax_charrnn_tilde_test")
  assert os.path.isdir(home) and not os.path.exists(os.path.join(REPO, "~"))
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(home)
  bad_name = os.fsencode(str(tmp_path)) + b"/run\xff"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  r = subprocess.run([sys.executable.encode(), b"-m", b"jax_charrnn.train",
                      b"--data_path=" + os.fsencode(book), b"--workdir=" + bad_name,
                      b"--num_steps=5"], capture_output=True, env=env, cwd=REPO, timeout=120)
  assert r.returncode == 2 and b"Traceback" not in r.stderr, r.stderr[-2000:]
  assert b"not valid UTF-8" in b" ".join(r.stderr.split())


# ---- 8. long samples stream and hear Ctrl-C ----

@pytest.mark.slow
def test_a_huge_sample_streams_and_stops_on_ctrl_c(book, tmp_path):
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={tmp_path / 'run'}",
                 "--num_steps=20", *SMALL)
  assert r.returncode == 0, r.stderr[-2000:]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.Popen([sys.executable, "-m", "jax_charrnn.sample",
                           f"--workdir={tmp_path / 'run'}", "--length=10000000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
  first = proc.stdout.read(5000)  # text arrives before the whole sample is drawn
  assert len(first) == 5000
  sent = time.time()
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=60)
  assert time.time() - sent < 5 and proc.returncode == 130
  assert b"Traceback" not in err and b"Interrupted" in err


# ---- 9. a loss that explodes without becoming NaN ----

def test_a_loss_above_the_ratio_stops_the_run_naming_the_last_checkpoint(text_file, tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train(_config(text_file, num_steps=40), workdir)
  with pytest.raises(trainer.Diverged, match=r"times the first loss .* The last good "
                                             r"checkpoint is step 40"):
    trainer.train(_config(text_file, num_steps=80, max_loss_ratio=0.5), workdir)


def test_the_divergence_rule_watches_the_smooth_loss_and_every_non_finite_loss():
  from jax_charrnn import divergence  # pylint: disable=g-import-not-at-top
  losses = np.array([10.0, 38.0, 31.0, 12.0, np.nan, 5.0])
  smooths = np.array([10.0, 10.5, 29.0, 31.0, 31.0, np.inf])
  # A chunk at 3.8x the first loss is not a divergence; the smooth loss above 3x is.
  assert divergence.diverged(losses, smooths, 10.0, 3.0).tolist() == [
      False, False, False, True, True, True]
  assert divergence.diverged(losses, smooths, 10.0, 0.0).tolist() == [
      False, False, False, False, True, True]
  assert divergence.diverged(losses, smooths, None, 3.0).tolist() == [
      False, False, False, False, True, True]
  assert "3.1 times the first loss 10" in divergence.describe(12.0, 31.0, 10.0, 3.0)
  assert divergence.describe(np.nan, 31.0, 10.0, 3.0) == "the loss became nan"


def test_a_sweep_goes_back_to_the_newest_step_every_run_holds_intact(text_file, tmp_path, capsys):
  workdir = str(tmp_path / "sw")
  trainer.sweep(_config(text_file, num_steps=40), [0.1], [0, 1], workdir)
  for path in _array_files(os.path.join(workdir, "lr0.1_seed1"), 40):
    _overwrite(path)
  capsys.readouterr()
  results = trainer.sweep(_config(text_file, num_steps=60), [0.1], [0, 1], workdir)
  out, err = capsys.readouterr()
  assert "Resumed the sweep's 2 runs from their checkpoints at step 20" in out
  assert "The sweep goes back to step 20" in err and "40.damaged" in err
  assert [r.record.step for r in results] == [60, 60]
