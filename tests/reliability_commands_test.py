"""Every command as careful as train (issue 23): one test (or a few) per class of what an
adversarial trial found.

1 a run file that is a directory, 2 a workdir name the checkpoint library rejects or
rewrites, 3 a damaged newest checkpoint behind evaluate / export / sample / visualize,
4 export's --out (an existing file, a directory, an empty name), 5 a resume with another
--grad, 6 a directory holding a person's own files, 7 --eval_every without --val_fraction,
8 a resume at an odd step and metrics.jsonl, 9 Ctrl-C in the commands that read or write
text, 10 --val_fraction's message, 11 the memory estimate before every command builds a
network. Most share one small trained run (`trained`), copied where a test damages it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import (checkpoint, data, generate, loop, model, pacing, paths, report, rundir,
                         runfiles, score)
from jax_charrnn import visualize
from jax_charrnn.errors import UserError

from helpers import (REPO, SMALL_RUN, SMALL_STEPS, assert_user_error, copy_run, run_module,
                     small_config, train_small)

SMALL, STEPS = SMALL_RUN, SMALL_STEPS
_train, _copy = train_small, copy_run  # book and trained: conftest.py's fixtures


def _no_update(result):
  """Refused before the first update: no progress line was printed."""
  assert "step 1" not in result.stdout and "Compiled" not in result.stdout, result.stdout


# ---- 1. a run file that is a directory ----

@pytest.mark.slow
@pytest.mark.parametrize("name", [runfiles.METRICS, runfiles.STEP_LOSSES, runfiles.SAMPLES])
def test_a_run_file_that_is_a_directory_is_refused_before_the_first_update(
    name, trained, book, tmp_path):
  workdir = _copy(trained, tmp_path)
  os.remove(os.path.join(workdir, name))
  os.mkdir(os.path.join(workdir, name))
  steps = checkpoint.all_steps(workdir)
  r = _train(book, workdir, f"--num_steps={STEPS + 10}")
  assert_user_error(r, f"{name}", "is a directory", "nothing was changed")
  _no_update(r)
  assert checkpoint.all_steps(workdir) == steps and os.path.isdir(os.path.join(workdir, name))
  os.rmdir(os.path.join(workdir, name))  # the other way: the same command resumes
  r = _train(book, workdir, f"--num_steps={STEPS + 10}")
  assert r.returncode == 0, r.stderr[-2000:]


def test_check_run_files_both_ways(tmp_path):
  rundir.check_run_files(str(tmp_path))  # nothing there
  (tmp_path / runfiles.METRICS).write_text("")
  rundir.check_run_files(str(tmp_path))  # a plain file
  os.mkdir(tmp_path / runfiles.REPORT)
  with pytest.raises(UserError, match="report.md.*is a directory"):
    rundir.check_run_files(str(tmp_path))


# ---- 2. a workdir name the checkpoint library rejects or rewrites ----

NAMES = ["a$b", "a b", "é", "a$(x)", "a\\b", "a\\$b", "x\\y\\z", "a\\", "a\\\\b", "\\"]


def _saves_and_restores(workdir):
  """Whether the real saver writes a checkpoint under workdir and restores it intact."""
  state = {"x": jnp.arange(3.0)}
  try:
    os.makedirs(workdir, exist_ok=True)
    mngr = checkpoint.make_manager(workdir)
    checkpoint.save(mngr, 1, state, {})
    mngr.wait_until_finished()
    mngr.close()
    restored, _ = checkpoint.restore(workdir, state)
    return bool(np.array_equal(restored["x"], state["x"]))
  except Exception:  # pylint: disable=broad-except  (any failure of the saver counts)
    return False


@pytest.mark.parametrize("name", NAMES)
def test_check_path_refuses_exactly_what_the_saver_cannot_save_and_restore(name, tmp_path):
  workdir = os.path.join(str(tmp_path), name)
  try:
    checkpoint.check_path(workdir)
    accepted = True
  except UserError as e:
    assert "Choose a plainer --workdir" in str(e)
    accepted = False
  assert accepted == _saves_and_restores(workdir), (name, accepted)


@pytest.mark.slow
def test_a_workdir_with_a_backslash_is_refused_before_the_first_update(book, tmp_path):
  r = _train(book, str(tmp_path / "a\\b"), "--num_steps=5")
  assert_user_error(r, "Checkpoints cannot be saved under the workdir", "backslash")
  _no_update(r)
  assert not os.path.exists(tmp_path / "a")  # tensorstore's reading would have written here


# ---- 3. a damaged newest checkpoint behind every command that reads a run ----

@pytest.mark.slow
def test_every_command_warns_when_it_falls_back_past_a_damaged_checkpoint(trained, book,
                                                                          tmp_path):
  workdir = _copy(trained, tmp_path)
  newest = checkpoint.all_steps(workdir)[-1]
  with open(os.path.join(workdir, "checkpoints", str(newest), "meta", "metadata"), "w") as f:
    f.write("garbage")
  warning = f"The checkpoint at step {newest}"
  commands = {"evaluate": ["--json", f"--data_path={book}"],
              "export": [f"--out={tmp_path / 'm.npz'}"], "sample": ["--length=5"],
              "visualize": [f"--out={tmp_path / 'page.html'}", "--max_chars=50"]}
  for command, args in commands.items():
    r = run_module(f"jax_charrnn.{command}", f"--workdir={workdir}", *args)
    assert r.returncode == 0, (command, r.stderr[-2000:])
    joined = " ".join(r.stderr.split())
    assert warning in joined and "is damaged" in joined, (command, r.stderr)
  r = run_module("jax_charrnn.sample", f"--workdir={trained}", "--length=5")  # intact: silent
  assert r.returncode == 0 and "damaged" not in r.stderr, r.stderr


# ---- 4. export's --out ----

def test_output_file_rules(tmp_path):
  out = lambda name, **kw: paths.output_file(str(tmp_path / name) if name else name,
                                             suffix=".npz", **kw)
  assert out("m.npz") == str(tmp_path / "m.npz")
  assert out("m") == str(tmp_path / "m.npz")  # the name it really gets
  for bad, phrase in (("", "is empty"), (".npz", "names no file"), ("missing/m.npz",
                                                                   "does not exist")):
    with pytest.raises(UserError, match=phrase):
      out(bad)
  os.mkdir(tmp_path / "d")
  with pytest.raises(UserError, match="is a directory"):
    out("d")
  (tmp_path / "mine.npz").write_text("a person's file")
  with pytest.raises(UserError, match="already exists.*--overwrite"):
    out("mine.npz")
  assert out("mine.npz", overwrite=True) == str(tmp_path / "mine.npz")


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path):
  path = str(tmp_path / "m.npz")
  paths.write_atomic(path, lambda f: f.write(b"old"))

  def fail(f):
    f.write(b"half")
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    paths.write_atomic(path, fail)
  assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.slow
def test_export_refuses_to_replace_a_file_without_overwrite(trained, tmp_path):
  mine = tmp_path / "mine.npz"
  mine.write_text("a person's file")
  r = run_module("jax_charrnn.export", f"--workdir={trained}", f"--out={mine}")
  assert_user_error(r, "already exists", "--overwrite")
  assert mine.read_text() == "a person's file"
  os.mkdir(tmp_path / "dir")
  r = run_module("jax_charrnn.export", f"--workdir={trained}", f"--out={tmp_path / 'dir'}")
  assert_user_error(r, "is a directory")
  r = run_module("jax_charrnn.export", f"--workdir={trained}", "--out=")
  assert_user_error(r, "--out is empty")
  assert sorted(os.listdir(tmp_path)) == ["dir", "mine.npz"]  # no dir.npz, no .npz
  r = run_module("jax_charrnn.export", f"--workdir={trained}", f"--out={mine}", "--overwrite")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "decoder.weight" in np.load(mine).files
  r = run_module("jax_charrnn.export", "--help")
  assert r.returncode == 0 and "--overwrite=false" in r.stdout and "refused unless" in r.stdout


# ---- 5. a resume with another --grad ----

@pytest.mark.slow
def test_the_report_says_which_gradients_each_update_range_used(book, tmp_path):
  workdir = str(tmp_path / "run")
  assert _train(book, workdir, "--num_steps=13").returncode == 0
  r = _train(book, workdir, f"--num_steps={STEPS}", "--grad=autodiff")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Updates 1-13 of this run used manual gradients" in " ".join(r.stdout.split())
  # A second change names each stretch, as the report does (one account of them: the record).
  r = _train(book, workdir, f"--num_steps={STEPS + 5}", "--grad=manual")
  assert r.returncode == 0, r.stderr[-2000:]
  assert (f"Updates 1-13 of this run used manual gradients and 14-{STEPS} of this run used "
          f"autodiff gradients; from update {STEPS + 1} on it uses manual") in " ".join(
              r.stdout.split())
  text = open(os.path.join(workdir, runfiles.REPORT), encoding="utf-8").read()
  assert (f"gradients: manual for updates 1-13, autodiff for updates 14-{STEPS}, manual for "
          f"updates {STEPS + 1}-{STEPS + 5}") in text
  _, meta = checkpoint.read_meta(workdir)
  assert meta["gradient_methods"] == [[0, "manual"], [13, "autodiff"], [STEPS, "manual"]]
  assert meta["grads"] == meta["gradient_methods"]  # what readers of an earlier version read


def test_gradient_phrase_both_ways():
  from jax_charrnn.config import TrainConfig
  from jax_charrnn.record import RunRecord
  record = lambda grad, methods, done: RunRecord("r", "w", TrainConfig(grad=grad), 30, step=done,
                                                 gradient_methods=methods)
  assert report.gradient_phrase(record("manual", [], 20)) == "manual gradients"
  assert report.gradient_phrase(record("autodiff", [[0, "manual"], [20, "autodiff"]], 20)) == \
      "manual gradients"  # the change took over after the last update: none used it
  assert report.gradient_phrase(record("autodiff", [[0, "manual"], [5, "autodiff"]], 20)) == \
      "gradients: manual for updates 1-5, autodiff for updates 6-20"


def test_a_checkpoint_of_an_earlier_version_reads_its_gradient_methods_from_grads():
  """Checkpoints written before the record named the history for what it holds call it
  "grads"; a resumed run reads it from there (and adds this session's change)."""
  from jax_charrnn.config import TrainConfig
  from jax_charrnn.record import RunRecord
  old = {"step": 20, "grads": [[0, "manual"], [10, "autodiff"]], "train_seconds": 3.5}
  r = RunRecord.resumed(old, "r", "w", TrainConfig(grad="manual"), 40)
  assert r.gradient_methods == [[0, "manual"], [10, "autodiff"], [20, "manual"]]
  assert r.timing.earlier == 3.5 and r.timing.start_step == 20 and r.step == 20
  same = RunRecord.resumed(dict(old, grads=[[0, "manual"]]), "r", "w", TrainConfig(), 40)
  assert same.gradient_methods == [[0, "manual"]]


# ---- 6. a directory holding a person's own files ----

@pytest.mark.slow
def test_a_directory_with_a_persons_samples_and_log_is_not_taken_as_a_run(book, tmp_path):
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "samples.txt").write_text("my own samples")
  (mine / "train.log").write_text("my own log")
  r = _train(book, str(mine), "--num_steps=5")
  assert_user_error(r, "holds files that no jax_charrnn run left there", "samples.txt")
  assert (mine / "samples.txt").read_text() == "my own samples"
  assert sorted(os.listdir(mine)) == ["samples.txt", "train.log"]


# ---- 7. --eval_every without --val_fraction ----

@pytest.mark.slow
def test_eval_every_without_val_fraction_is_an_error(book, tmp_path):
  r = _train(book, str(tmp_path / "a"), "--num_steps=5", "--eval_every=2")
  assert_user_error(r, "--eval_every=2 needs a held-out split", "--val_fraction")
  assert not os.path.exists(tmp_path / "a")
  r = _train(book, str(tmp_path / "b"), "--num_steps=5", "--eval_every=2", "--val_fraction=0.2")
  assert r.returncode == 0, r.stderr[-2000:]
  rows = runfiles.read_metrics(str(tmp_path / "b"))
  assert [row["step"] for row in rows if "val_bpc" in row] == [2, 4, 5]


def test_eval_every_is_checked_only_when_given():
  config = small_config("x.txt")
  config.check_given(set())  # the default eval_every, no held-out split: fine
  config.replace(val_fraction=0.1).check_given({"eval_every"})
  with pytest.raises(UserError, match="needs a held-out split"):
    config.check_given({"eval_every"})


# ---- 8. a resume at an odd step writes the rows of the same run in one go ----

@pytest.mark.slow
def test_a_run_resumed_at_an_odd_step_has_the_same_metrics_rows(trained, book, tmp_path):
  workdir = str(tmp_path / "run")
  assert _train(book, workdir, "--num_steps=13").returncode == 0
  assert [row["step"] for row in runfiles.read_metrics(workdir)] == [10, 13]
  assert _train(book, workdir, f"--num_steps={STEPS}").returncode == 0
  strip = lambda rows: [{k: v for k, v in row.items() if k not in ("chars_per_s", "wall_time")}
                        for row in rows]
  assert strip(runfiles.read_metrics(workdir)) == strip(runfiles.read_metrics(trained))


def test_row_due_both_ways():
  config = small_config("x.txt", log_every=10)
  assert rundir.row_due(config, 20) and not rundir.row_due(config, 13)
  assert rundir.row_due(config.replace(val_fraction=0.1, eval_every=13), 13)


# ---- 9. Ctrl-C in the commands that read or write text ----

def _big_params(hidden):
  config = small_config("x.txt", cell="lstm", hidden_size=hidden, grad="autodiff")
  net = loop.build_model(config, 30)
  return net, loop.init_state(config, net, loop.make_optimizer(config, 1)).params


def test_every_call_that_reads_or_draws_text_is_sized_by_its_cost(monkeypatch):
  """A call cannot be stopped once it runs: none may cost much more than CALL_FLOPS (the old
  fixed sizes, 100,000 characters a scoring call and 10,000 a sampling one, cost ~1e12 for
  this network), SHARED_STREAMS streams side by side counted as one (pacing.py)."""
  net, params = _big_params(256)
  per_char = 2 * model.param_count(params)
  ids = np.random.default_rng(0).integers(0, 30, 20_000)
  seen = []
  real_block, real_read, real_sample = score._block_nats, visualize._read, model.sample_on
  monkeypatch.setattr(visualize, "_read", lambda net, p, c, x, *a: (
      seen.append(("trace", x.size)), real_read(net, p, c, x, *a))[1])
  monkeypatch.setattr(model, "sample_on", lambda net, p, c, x0, n, *a: (
      seen.append(("sample", n * x0.shape[0] / min(x0.shape[0], pacing.SHARED_STREAMS))),
      real_sample(net, p, c, x0, n, *a))[1])
  monkeypatch.setattr(score, "_block_nats", lambda net, p, c, x, *a: (
      seen.append(("score", x.size / min(x.shape[2] if x.ndim == 3 else 1,
                                         pacing.SHARED_STREAMS))), real_block(net, p, c, x, *a))[1])
  whole = score.score_ids(net, params, ids)
  score.score_ids(net, params, np.tile(ids, 5), streams=8)  # 8 segments side by side
  visualize.trace_text(net, params, ids[:3000])
  vocab = data.Vocab.from_text("".join(chr(97 + i) for i in range(30)))
  generate.generate(net, params, vocab, net.zero_carry((), jnp.float32), 0, 3000,
                    jax.random.key(0), num_samples=2)
  kinds = {kind for kind, _ in seen}
  assert kinds == {"score", "trace", "sample"}, kinds
  assert any(chars * per_char > 0.5 * pacing.CALL_FLOPS for kind, chars in seen
             if kind == "score")  # and they are not cut finer than that
  for kind, chars in seen:
    assert chars * per_char <= 1.01 * pacing.CALL_FLOPS, (kind, chars)
  # The score does not depend on how the text is cut into calls.
  monkeypatch.setattr(pacing, "CALL_FLOPS", 1e15)
  assert abs(score.score_ids(net, params, ids).nats_per_char - whole.nats_per_char) < 1e-5


@pytest.mark.slow
def test_ctrl_c_stops_evaluate_of_a_long_text_within_seconds(book, tmp_path):
  workdir = str(tmp_path / "big")
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                 "--hidden_size=1024", "--seq_length=5", "--num_steps=1", "--sample_every=0",
                 "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=5",
                 "--sample_length=5")
  assert r.returncode == 0, r.stderr[-2000:]
  long_text = tmp_path / "long.txt"
  long_text.write_text("the cat sat on the mat. " * 20_000, encoding="utf-8")
  # At 1 s JAX is still loading: Python's own handler's KeyboardInterrupt was swallowed there
  # ('Exception ignored in _xla_gc_callback') and the command read on for minutes. At 12 s it
  # is scoring (all 480,000 characters take minutes).
  for delay in (1, 12):
    code, err, took = _interrupted(["jax_charrnn.evaluate", f"--workdir={workdir}",
                                    f"--data_path={long_text}"], delay)
    assert code == 130 and b"Interrupted" in err and b"Traceback" not in err, err
    # Calls of the old size (100,000 characters) took 68 s to hear Ctrl-C on this host under
    # load; sized calls 1.5 s (6.5 s with the whole suite running beside it); now 0.02-0.14 s.
    assert took < 10, (delay, took)


def _interrupted(module_args, delay):
  """(exit code, stderr, seconds to exit) of `python -m module_args` sent SIGINT after `delay` s
  (asserting that it was still running then)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.Popen([sys.executable, "-m", *module_args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd=REPO)
  try:
    time.sleep(delay)
    assert proc.poll() is None, proc.communicate()
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.time() - sent
  finally:
    proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["visualize", "export"])
def test_ctrl_c_while_visualize_or_export_loads_ends_it_in_one_line(trained, tmp_path, command):
  """They kept Python's own Ctrl-C: during JAX's loading the KeyboardInterrupt came out as a
  traceback (or was swallowed and the command went on); now one line and exit 130. (The
  temporary file of a write cut short: the next test.)"""
  out = tmp_path / ("page.html" if command == "visualize" else "model.npz")
  # At 0.8 s JAX is still loading (about 2 s here).
  code, err, _ = _interrupted([f"jax_charrnn.{command}", f"--workdir={trained}", f"--out={out}"],
                              0.8)
  assert code == 130 and b"Interrupted" in err and b"Traceback" not in err, err
  assert not out.exists()


def test_an_at_once_ctrl_c_in_the_middle_of_write_atomic_leaves_no_temporary_file(tmp_path):
  """paths.write_atomic's temporary file is removed by the at-once handler (os._exit skips
  write_atomic's own clean-up); a file written before, whole, stays; the target is not made."""
  script = (
      "import os, signal, time\n"
      "from jax_charrnn import errors, paths\n"
      "errors.stop_at_once_on_ctrl_c()\n"
      "paths.write_atomic('kept.txt', lambda f: f.write(b'done'))\n"
      "def write(f):\n"
      "  f.write(b'half')\n"
      "  f.flush()\n"
      "  os.kill(os.getpid(), signal.SIGINT)\n"
      "  time.sleep(30)\n"
      "paths.write_atomic('page.html', write)\n")
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                     cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO))
  assert r.returncode == 130 and b"Interrupted" in r.stderr, r.stderr
  assert sorted(os.listdir(tmp_path)) == ["kept.txt"]
  assert (tmp_path / "kept.txt").read_text() == "done"


# ---- 10. --val_fraction's message names the whole text and its training part ----

@pytest.mark.slow
def test_a_val_fraction_that_leaves_too_little_names_both_sizes(book, tmp_path):
  r = _train(book, str(tmp_path / "run"), "--num_steps=5", "--val_fraction=0.99999")
  assert_user_error(r, "--val_fraction=0.99999 leaves 0 of the text's 7,200 characters")
  r = _train(book, str(tmp_path / "run"), "--num_steps=5", "--val_fraction=0.5")
  assert r.returncode == 0, r.stderr[-2000:]


# ---- 11. the memory estimate before every command builds a network ----

def test_the_memory_estimate_counts_each_regularisers_masks():
  """Dropout: a mask and the dropped output per layer and character; input dropout: a mask
  and the masked one-hot vector per character; weight drop: a mask and the dropped W_hh per
  layer (2 layers of an LSTM of 32, K = 70, 3 streams of 10, float32 here)."""
  from jax_charrnn import memory
  from jax_charrnn.config import TrainConfig
  base = TrainConfig(cell="lstm", hidden_size=32, num_layers=2, seq_length=10, batch_size=3)
  made = lambda c: memory.estimate_bytes(c, loop.build_model(c, 70), loop.make_optimizer(c, 100))
  plain = made(base)
  grown = lambda **kw: made(base.replace(**kw)) - plain
  assert grown(dropout=0.2) == 4 * 30 * 2 * 2 * 32
  assert grown(input_dropout=0.1) == 4 * 30 * 2 * 70
  assert grown(weight_drop=0.2) == 4 * 2 * 2 * 4 * 32 * 32
  assert grown(dropout=0.2, input_dropout=0.1, weight_drop=0.2) == (
      grown(dropout=0.2) + grown(input_dropout=0.1) + grown(weight_drop=0.2))


@pytest.mark.parametrize("optimizer,dtype", [("adagrad", "float32"), ("adam", "float64"),
                                             ("sgd", "float32")])
def test_the_memory_estimate_counts_the_training_state_exactly(optimizer, dtype):
  """The state's part is jax.eval_shape's: the bytes of a real fresh state (parameters,
  the optimiser's slots, the best copy, carries), whichever optimiser and dtype; the rest is
  three more copies of the parameters and a chunk's activations."""
  from jax_charrnn import memory
  from jax_charrnn.config import TrainConfig
  config = TrainConfig(cell="gru", hidden_size=24, num_layers=2, seq_length=10, batch_size=3,
                       optimizer=optimizer, dtype=dtype, lr_schedule="cosine")
  net = loop.build_model(config, 70)
  with jax.enable_x64(dtype == "float64"):
    state = loop.init_state(config, net, loop.make_optimizer(config, 100))
  real = sum(x.nbytes for x in jax.tree.leaves(state))
  tx = loop.make_optimizer(config, 100)
  assert memory.state_bytes(config, net, tx) == real
  params = model.param_count(state.params)
  assert memory.param_count(config, 70) == params
  slots = {"adagrad": 1, "adam": 2, "sgd": 0}[optimizer]
  item = 8 if dtype == "float64" else 4
  assert real >= item * params * (2 + slots)  # the parameters, the best copy, the slots
  made = memory.estimate_bytes(config, net, tx) - real
  assert made > item * params * memory.UPDATE_COPIES


@pytest.mark.slow
def test_every_command_refuses_a_network_too_large_for_the_memory(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  for step in checkpoint.all_steps(workdir):
    path = os.path.join(workdir, "checkpoints", str(step), "meta", "metadata")
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
    meta["config"]["hidden_size"] = 2_000_000  # ~16 TB of parameters
    with open(path, "w", encoding="utf-8") as f:
      json.dump(meta, f)
  for command in ("evaluate", "sample", "export", "visualize"):
    r = run_module(f"jax_charrnn.{command}", f"--workdir={workdir}",
                   *([f"--out={tmp_path / 'out.npz'}"] if command == "export" else []))
    assert_user_error(r, "GiB", "--hidden_size")
  r = run_module("jax_charrnn.sample", f"--workdir={trained}", "--length=5")  # the real size
  assert r.returncode == 0, r.stderr[-2000:]
