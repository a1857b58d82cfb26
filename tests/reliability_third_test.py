"""The third adversarial trial (issue 32): nothing deleted or written that the run did not make,
no traceback on a file the user owns, bounded reading of any input, messages that say what
happened. The numbers in the section titles are the issue's; the notebook's parameters (14) are
tested in notebook_test.py, TensorBoard's first sample (13) in board_test.py.

Most command-line tests share one small trained run (`trained`), copied where a test changes it.
"""

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest

from jax_charrnn import board, checkpoint, data, paths, rundir, runfiles
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import (REPO, SMALL_RUN, SMALL_STEPS, SMALL_TEXT, assert_user_error, copy_run,
                     run_module, train_small)

SMALL, STEPS = SMALL_RUN, SMALL_STEPS
_train, _copy = train_small, copy_run  # book and trained: conftest.py's fixtures


@contextlib.contextmanager
def unwritable(path):
  """`path` (a file or a directory) made unwritable for the duration: read-only permissions,
  or for root (whom permissions do not stop) the file system's immutable flag."""
  if os.geteuid() != 0:
    mode = os.stat(path).st_mode
    os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
    try:
      yield
    finally:
      os.chmod(path, mode)
    return
  if subprocess.run(["chattr", "+i", path], capture_output=True).returncode != 0:
    pytest.skip("running as root on a file system without the immutable flag")
  try:
    yield
  finally:
    subprocess.run(["chattr", "-i", path], check=True)


# ---- 1. --overwrite deletes the run's own files only ----

def test_clearing_a_run_deletes_what_runs_write_and_nothing_else(tmp_path):
  ckpt = tmp_path / "checkpoints"
  for name in ("10", "20", "30.orbax-checkpoint-tmp-1733", "20.damaged", "20.unused2"):
    (ckpt / name).mkdir(parents=True)
    (ckpt / name / "state").write_text("x")
  (ckpt / "my_model.pt").write_text("mine")
  (ckpt / "40").write_text("a file, not a step directory")
  (tmp_path / "tensorboard").mkdir()
  (tmp_path / "tensorboard" / "events.out.tfevents.1.host.from0").write_text("e")
  (tmp_path / "tensorboard" / "keep.txt").write_text("mine")
  (tmp_path / runfiles.METRICS).write_text("{}\n")
  (tmp_path / "notes.txt").write_text("mine")
  rundir.clear(str(tmp_path))
  assert sorted(os.listdir(ckpt)) == ["40", "my_model.pt"]
  assert os.listdir(tmp_path / "tensorboard") == ["keep.txt"]
  assert sorted(os.listdir(tmp_path)) == ["checkpoints", "notes.txt", "tensorboard"]
  os.remove(ckpt / "my_model.pt")
  os.remove(ckpt / "40")
  os.remove(tmp_path / "tensorboard" / "keep.txt")
  rundir.clear(str(tmp_path))  # emptied of a run's files, the folders go too
  assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.slow
def test_overwrite_in_a_directory_of_someone_elses_files_keeps_them(book, tmp_path):
  workdir = tmp_path / "mine"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "checkpoints" / "my_model.pt").write_bytes(b"weights")
  (workdir / "notes.txt").write_text("notes")
  r = _train(book, str(workdir), "--num_steps=10")
  assert_user_error(r, "holds files that no jax_charrnn run left there", "checkpoints",
                    "notes.txt")
  assert sorted(os.listdir(workdir)) == ["checkpoints", "notes.txt"]
  r = _train(book, str(workdir), "--num_steps=10", "--overwrite")
  assert r.returncode == 0, r.stderr[-2000:]
  assert (workdir / "checkpoints" / "my_model.pt").read_bytes() == b"weights"
  assert (workdir / "notes.txt").read_text() == "notes"
  assert checkpoint.all_steps(str(workdir)) == [10]


# ---- 2. no file of a run is written through a link ----

@pytest.mark.slow
@pytest.mark.parametrize("name", [runfiles.STEP_LOSSES, "train.log", runfiles.METRICS])
def test_a_run_file_that_is_a_link_is_refused_and_its_target_kept(name, trained, book, tmp_path):
  workdir = _copy(trained, tmp_path)
  target = tmp_path / "outside.bin"
  target.write_bytes(b"precious")
  os.remove(os.path.join(workdir, name))
  os.symlink(target, os.path.join(workdir, name))
  r = _train(book, workdir, f"--num_steps={STEPS + 10}")
  assert_user_error(r, name, "is a link", "the run never writes through one",
                    "nothing was changed")
  assert target.read_bytes() == b"precious"
  assert checkpoint.all_steps(workdir)[-1] == STEPS


def test_check_run_files_refuses_a_link_and_an_unwritable_file_and_passes_a_plain_one(tmp_path):
  (tmp_path / runfiles.STEP_LOSSES).write_bytes(b"")
  rundir.check_run_files(str(tmp_path))
  os.symlink(tmp_path / "elsewhere", tmp_path / runfiles.SAMPLES)  # a dangling link too
  with pytest.raises(UserError, match="samples.txt.*is a link"):
    rundir.check_run_files(str(tmp_path))
  os.remove(tmp_path / runfiles.SAMPLES)
  with unwritable(tmp_path / runfiles.STEP_LOSSES):
    with pytest.raises(UserError, match="losses.f32.*a file the run cannot write"):
      rundir.check_run_files(str(tmp_path))
  rundir.check_run_files(str(tmp_path))


def test_the_appended_files_are_never_opened_through_a_link(tmp_path):
  target = tmp_path / "outside"
  target.write_bytes(b"precious")
  os.symlink(target, tmp_path / runfiles.METRICS)
  with pytest.raises(OSError):
    runfiles.append_metrics(str(tmp_path), [{"step": 1}])
  assert target.read_bytes() == b"precious"


# ---- 3. a refused start leaves nothing behind ----

@pytest.mark.slow
def test_a_start_refused_for_a_foreign_directory_leaves_no_log_in_it(book, tmp_path):
  home = tmp_path / "home"
  home.mkdir()
  (home / ".bashrc").write_text("mine")
  r = _train(book, str(home), "--num_steps=10")
  assert_user_error(r, "holds files that no jax_charrnn run left there")
  assert os.listdir(home) == [".bashrc"]
  r = _train(book, str(tmp_path / "new"), "--num_steps=0", "--epochs=0")  # refused settings
  assert_user_error(r, "nothing to train")
  assert not os.path.exists(tmp_path / "new")


# ---- 4. --tensorboard where the event files cannot go ----

def test_the_board_check_refuses_a_file_a_link_and_an_unwritable_folder(tmp_path):
  board.check(str(tmp_path))  # nothing there yet
  (tmp_path / "tensorboard").mkdir()
  board.check(str(tmp_path))
  with unwritable(tmp_path / "tensorboard"):
    with pytest.raises(UserError, match="Cannot write TensorBoard's event files"):
      board.check(str(tmp_path))
  os.rmdir(tmp_path / "tensorboard")
  (tmp_path / "tensorboard").write_text("a file")
  with pytest.raises(UserError, match="is a file, where --tensorboard writes"):
    board.check(str(tmp_path))


@pytest.mark.slow
def test_tensorboard_over_a_file_of_that_name_is_a_paragraph(trained, book, tmp_path):
  pytest.importorskip("tensorboardX")
  workdir = _copy(trained, tmp_path)
  with open(os.path.join(workdir, "tensorboard"), "w", encoding="utf-8") as f:
    f.write("mine")
  r = _train(book, workdir, f"--num_steps={STEPS + 10}", "--tensorboard")
  assert_user_error(r, "is a file, where --tensorboard writes", "nothing was changed")
  assert checkpoint.all_steps(workdir)[-1] == STEPS


# ---- 5. a read-only run file on resume ----

@pytest.mark.slow
def test_resuming_with_a_read_only_loss_file_is_a_paragraph(trained, book, tmp_path):
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, runfiles.STEP_LOSSES)
  with unwritable(path):
    r = _train(book, workdir, f"--num_steps={STEPS + 10}")
  assert_user_error(r, "losses.f32", "a file the run cannot write", "nothing was changed")
  assert checkpoint.all_steps(workdir)[-1] == STEPS


# ---- 6, 9. visualize: a name that is not UTF-8; what its score skipped ----

@pytest.mark.slow
def test_visualize_writes_a_name_that_is_not_utf8_and_says_what_it_skipped(trained, tmp_path):
  text = tmp_path / "other.txt"
  text.write_text("the Zat sat on the ZZ mat. " * 3, encoding="utf-8")
  out = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"page\xff.html"))
  r = run_module("jax_charrnn.visualize", f"--workdir={trained}", f"--data_path={text}",
                 f"--out={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert os.path.exists(out) and os.path.exists(out[:-5] + ".json")
  assert "page\ufffd.html" in r.stdout
  assert "(9 predictions of characters the model does not know: 'Z' (9))" in r.stdout


def test_shown_makes_any_name_printable():
  assert paths.shown("caf\u00e9.html") == "caf\u00e9.html"
  assert paths.shown(os.fsdecode(b"p\xff.html")) == "p\ufffd.html"
  "p\ufffd.html".encode("utf-8")  # and it encodes


# ---- 7. inputs read without bound ----

@pytest.mark.slow
def test_a_device_file_is_refused_as_data(trained, book, tmp_path):
  r = _train("/dev/zero", str(tmp_path / "run"), "--num_steps=10")
  assert_user_error(r, "'/dev/zero' is not a regular file")
  r = run_module("jax_charrnn.visualize", f"--workdir={trained}", "--data_path=/dev/urandom",
                 "--max_chars=300", f"--out={tmp_path / 'p.html'}")
  assert_user_error(r, "'/dev/urandom' is not a regular file")


def test_head_reads_a_few_bytes_per_symbol_asked_for(tmp_path, monkeypatch):
  path = tmp_path / "big.txt"
  path.write_text("word " * 4_000_000, encoding="utf-8")  # 20 MB
  read = []
  real_open = open

  class Counting:
    def __init__(self, f):
      self.f = f

    def read(self, n=-1):
      chunk = self.f.read(n)
      read.append(len(chunk))
      return chunk

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

  monkeypatch.setattr(data, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
  text, more = data.head(str(path), 300)
  assert text == ("word " * 60) and more
  assert sum(read) <= 8192, read


# ---- 8. the console's gradient history ----

@pytest.mark.slow
def test_a_second_grad_change_is_said_as_report_md_says_it(trained, book, tmp_path):
  workdir = _copy(trained, tmp_path)
  r = _train(book, workdir, f"--num_steps={STEPS + 5}", "--grad=autodiff")
  assert r.returncode == 0, r.stderr[-2000:]
  r = _train(book, workdir, f"--num_steps={STEPS + 10}", "--grad=manual")
  assert r.returncode == 0, r.stderr[-2000:]
  assert ("Updates 1-25 of this run used manual gradients and 26-30 of this run used autodiff "
          "gradients; from update 31 on it uses manual") in r.stdout, r.stdout
  report = open(os.path.join(workdir, runfiles.REPORT), encoding="utf-8").read()
  assert ("gradients: manual for updates 1-25, autodiff for updates 26-30, manual for updates "
          "31-35") in report


# ---- 10. visualize's page and numbers: both or neither ----

def test_files_written_together_survive_a_ctrl_c_between_them_together(tmp_path):
  script = textwrap.dedent(f"""
      import os, signal
      from jax_charrnn import errors, paths
      errors.stop_at_once_on_ctrl_c()
      real = os.replace
      def replace(a, b):  # Ctrl-C arrives between the two renames
        real(a, b)
        signal.raise_signal(signal.SIGINT)
      os.replace = replace
      paths.write_out({str(tmp_path / 'p.html')!r}, lambda f: f.write(b"page"),
                      more=[({str(tmp_path / 'p.json')!r}, lambda f: f.write(b"numbers"))])
      print("not reached")
      """)
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                     cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"))
  assert r.returncode == 130 and "not reached" not in r.stdout, r.stderr
  assert sorted(os.listdir(tmp_path)) == ["p.html", "p.json"]  # both, and no temporary file
  assert (tmp_path / "p.json").read_bytes() == b"numbers"


# ---- 11. evaluate and visualize from another directory ----

@pytest.mark.slow
def test_a_run_with_a_relative_data_path_is_read_from_anywhere(tmp_path):
  start = tmp_path / "project"
  start.mkdir()
  (start / "book.txt").write_text(SMALL_TEXT, encoding="utf-8")
  r = run_module("jax_charrnn.train", "--data_path=book.txt", "--workdir=run", "--num_steps=10",
                 "--val_fraction=0.1", *SMALL, cwd=str(start))
  assert r.returncode == 0, r.stderr[-2000:]
  workdir = str(start / "run")
  r = run_module("jax_charrnn.evaluate", f"--workdir={workdir}")  # from the repository
  assert r.returncode == 0 and "bits/char" in r.stdout, r.stderr[-2000:]
  os.rename(start / "book.txt", start / "moved.txt")
  r = run_module("jax_charrnn.evaluate", f"--workdir={workdir}")
  assert_user_error(r, "the run trained on 'book.txt', relative to the directory train ran in",
                    repr(str(start / "book.txt")), repr(os.path.join(REPO, "book.txt")),
                    "Run this command from the directory train ran in",
                    "--data_path=FILE to read another text instead")
  assert "leave it empty" not in r.stderr


# ---- 12. --visualize_chars=1 ----

def test_visualize_chars_of_one_is_refused_up_front():
  with pytest.raises(UserError, match=r"visualize_chars must be 0 \(no page\) or from 2"):
    TrainConfig(visualize_chars=1)
  assert TrainConfig(visualize_chars=2).visualize_chars == 2
  assert TrainConfig(visualize_chars=0).visualize_chars == 0
