"""Data parallelism over 8 simulated CPU devices, and over two processes on localhost."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest


from helpers import REPO, TINY_TEXT, assert_user_error, load_run, run_module

pytestmark = pytest.mark.slow
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
# float64: AdaGrad turns float32 rounding differences of near-zero gradient
# entries into visible parameter differences within tens of steps, which
# would hide a real error; in float64 the runs must agree to ~1e-9.
RUN = ["--hidden_size=16", "--seq_length=10", "--batch_size=4",
       "--num_steps=40", "--steps_per_call=16", "--log_every=10", "--sample_every=0",
       "--report_every=20", "--report_gradcheck_entries=0", "--passage_length=30",
       "--dtype=float64"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture()
def book(tmp_path):
  path = tmp_path / "book.txt"
  path.write_text(TINY_TEXT * 20, encoding="utf-8")
  return str(path)


def _train(*args, timeout=300):
  return run_module("jax_charrnn.train", *args, timeout=timeout)


def test_eight_devices_give_the_one_device_result(tmp_path, book):
  script = textwrap.dedent(f"""
      import jax
      jax.config.update("jax_num_cpu_devices", 8)
      jax.config.update("jax_enable_x64", True)
      import numpy as np
      from jax_charrnn import trainer
      from jax_charrnn.config import TrainConfig
      out = {{}}
      for n in (1, 8):
        # An LSTM, two layers, dropout: the carry (h, c) and the masks split by stream too.
        cfg = TrainConfig(data_path=r"{book}", cell="lstm", num_layers=2, dropout=0.2,
                          optimizer="adam", learning_rate=0.003, hidden_size=16, seq_length=10, batch_size=8,
                          num_steps=50, steps_per_call=16, log_every=10, sample_every=0,
                          report_every=0, report_gradcheck_entries=0, sample_length=10,
                          passage_length=10, num_devices=n, dtype="float64")
        s = trainer.train(cfg, r"{tmp_path}/run%d" % n)
        h = s.state.carry[0].c  # the LSTM's cell state, split by stream
        assert h.sharding.mesh.size == n, h.sharding
        assert len(h.sharding.device_set) == n
        out[n] = s
      diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                 for a, b in zip(jax.tree.leaves(out[1].state.params),
                                 jax.tree.leaves(out[8].state.params)))
      print("max param difference", diff)
      assert diff < 1e-7, diff
      assert abs(out[1].record.smooth_loss - out[8].record.smooth_loss) < 1e-9
  """)
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                     env=ENV, cwd=REPO)
  assert r.returncode == 0, r.stdout + r.stderr[-3000:]
  assert "max param difference" in r.stdout


def test_two_processes_give_the_one_process_result(tmp_path, book):
  port = _free_port()
  # Logs go to files: a pipe that nobody reads while waiting on the other
  # process could fill up and stall it inside a collective.
  log_files = [open(tmp_path / f"log{i}.txt", "w+") for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "jax_charrnn.train", *RUN, f"--data_path={book}",
       f"--workdir={tmp_path / 'multi'}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
       "--distributed_timeout=120"],
      stdout=log_files[i], stderr=subprocess.STDOUT, text=True, env=ENV, cwd=REPO)
      for i in range(2)]
  for p in procs:
    p.wait(timeout=300)
  logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  assert "on 2 cpu device(s) in 2 process(es)" in logs[0]
  assert "Done:" not in logs[1]  # process 1 stays quiet; process 0 speaks for the run
  assert (tmp_path / "multi" / "train.log").exists()
  assert (tmp_path / "multi" / "train.process1.log").exists()
  single = _train(*RUN, f"--data_path={book}", f"--workdir={tmp_path / 'single'}")
  assert single.returncode == 0, single.stderr[-3000:]
  import jax  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    _, multi_params, *_ = load_run(str(tmp_path / "multi"), "latest")
    _, single_params, *_ = load_run(str(tmp_path / "single"), "latest")
  for a, b in zip(jax.tree.leaves(multi_params), jax.tree.leaves(single_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9)
  for name in ("report.md", "loss.png", "samples.txt", "metrics.jsonl"):
    assert (tmp_path / "multi" / name).exists()


def test_unreachable_coordinator_is_a_clear_error():
  r = _train("--coordinator_address=127.0.0.1:%d" % _free_port(), "--num_processes=2",
             "--process_id=1", "--distributed_timeout=2", "--num_steps=5")
  assert_user_error(r, "Could not join the multi-process run at coordinator '127.0.0.1:",
                    "within 2 s")


@pytest.mark.parametrize("args,phrase", [
    (["--cpu_devices=2", "--num_devices=4"], "--num_devices=4 but only 2 CPU device(s) exist"),
    (["--cpu_devices=2", "--batch_size=3"], "--batch_size=3 cannot be split evenly over 2 devices"),
    (["--num_processes=2"], "needs --coordinator_address"),
])
def test_bad_parallel_settings_are_clear_errors(args, phrase, tmp_path, book):
  assert_user_error(_train(*args, "--num_steps=5", f"--workdir={tmp_path}",
                           f"--data_path={book}"), phrase)
