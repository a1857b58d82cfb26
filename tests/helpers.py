"""Helpers the tests share (imported as `from helpers import ...`; conftest only sets up)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from jax_charrnn.console import Console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A short English text with repeated characters; every test that needs "a book" uses it.
TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog. " * 3
    + "harry looked at hermione, and hermione looked at ron.\n" * 4
)


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b), (jax.tree.structure(a),
                                                         jax.tree.structure(b))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# optax's Adam family raises a Python float to an int32 power (its bias correction),
# which strict promotion refuses: their tests run with standard promotion.
NOT_STRICT_SAFE = ("adam", "adamw")


@contextlib.contextmanager
def strict_x64(strict: bool = True):
  """float64 and strict dtype promotion: no silent float32/float64 or int/float mixing."""
  with jax.enable_x64(True), jax.numpy_dtype_promotion("strict" if strict else "standard"):
    yield


def write_text(path, text: str = TINY_TEXT * 4) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


def run_module(module: str, *args: str, timeout: int = 240, cwd: str = REPO,
               **kw) -> subprocess.CompletedProcess:
  """`python -m module args...` as a user would run it (CPU only)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=cwd, **kw)


# A small run of the command line, shared by the tests of what commands do with a run: SMALL_RUN
# flags, SMALL_STEPS updates (checkpoints at 10, 20, 25) on SMALL_TEXT (the `book` and `trained`
# fixtures of conftest.py).
SMALL_RUN = ["--hidden_size=16", "--seq_length=10", "--log_every=10", "--sample_every=0",
             "--report_every=0", "--report_gradcheck_entries=0", "--passage_length=50",
             "--sample_length=10", "--checkpoint_every=10"]
SMALL_STEPS = 25
SMALL_TEXT = "the cat sat on the mat. " * 300


def train_small(book: str, workdir: str, *args: str, **kw) -> subprocess.CompletedProcess:
  """`train` with SMALL_RUN's flags on `book` in `workdir`, then `args`."""
  return run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                    *SMALL_RUN, *args, **kw)


def copy_run(workdir: str, tmp_path, name: str = "run") -> str:
  """A copy of a run's directory (links kept as links), for a test to change."""
  dst = str(tmp_path / name)
  shutil.copytree(workdir, dst, symlinks=True)
  return dst


def assert_user_error(result, *phrases, code=2):
  """A one-paragraph error: the exit code, no traceback, the phrases in stderr."""
  assert result.returncode == code, result.stdout[-1000:] + result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  joined = " ".join(result.stderr.split())
  for phrase in phrases:
    assert phrase in joined, result.stderr[-2000:]


def load_course_fixture():
  """The updates recorded before the cell refactor (by tests/fixtures/make_course_updates.py of
  commit 609fd03): {chain name: (config dict, inputs, targets, {step: {name: array}})}."""
  z = np.load(os.path.join(REPO, "tests", "fixtures", "course_updates.npz"))
  index = json.loads(str(z["index"]))
  out = {}
  for name, chain in index.items():
    states = {int(s): {k: z[v] for k, v in st.items()} for s, st in chain["states"].items()}
    out[name] = (chain["config"], z[chain["inputs"]], z[chain["targets"]], states)
  return out


def load_run(workdir: str, which: str = "best"):
  """(net, params, vocab, carry, x0, meta) of a run's best or latest parameters (saved.load)."""
  from jax_charrnn import saved  # pylint: disable=g-import-not-at-top
  s = saved.load(workdir, which)
  return s.net, s.params, s.vocab, s.carry, s.x0, s.meta


def small_config(text_file: str, **overrides):
  """A TrainConfig for a run of seconds on `text_file` (60 updates, quiet); overrides win."""
  from jax_charrnn.config import TrainConfig  # pylint: disable=g-import-not-at-top
  base = dict(data_path=text_file, hidden_size=16, seq_length=10, num_steps=60, steps_per_call=20,
              log_every=20, sample_every=0, report_every=0, checkpoint_every=20,
              report_gradcheck_entries=0, sample_length=10, passage_length=20)
  base.update(overrides)
  return TrainConfig(**base)


def start_module(module: str, *args: str) -> subprocess.Popen:
  """`python -m module args...` from the repository, CPU only, stdout and stderr piped."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
  """proc's stdout up to the first line holding `marker` (or to its end, or the timeout)."""
  deadline, seen = time.time() + timeout, []
  for line in proc.stdout:
    seen.append(line)
    if marker in line or time.time() > deadline:
      break
  return "".join(seen)


class StopAt(Console):
  """A console (trainer.train(..., console=StopAt("step 40/"))) that sends this process
  SIGINT, as Ctrl-C does, when a line starting with `prefix` is said."""

  def __init__(self, prefix: str):
    super().__init__(quiet=True)
    self.prefix = prefix

  def say(self, text):
    super().say(text)
    if text.startswith(self.prefix):
      signal.raise_signal(signal.SIGINT)


def epoch_windows(inputs, targets) -> np.ndarray:
  """The epoch's windows [n, T + 1, B] from its chunks [n, T, B] (walk.Corpus.windows's
  layout: each chunk's inputs and, shifted by one, its targets)."""
  return np.concatenate([np.asarray(inputs), np.asarray(targets)[:, -1:]], axis=1)


def call_windows(inputs, targets, step: int, count: int):
  """The windows of updates step .. step + count - 1, the walk wrapping at the epoch's end:
  what a fused call from update `step` reads."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  epoch = epoch_windows(inputs, targets)
  return jnp.asarray(epoch[(step + np.arange(count)) % len(epoch)])


def browse(page_path, act=None, screenshot=None):
  """Opens a page from the file system in headless Chromium (tools.browser): (requests, errors,
  act's result), act(page) run once the page has loaded. Skipped where the browser is missing,
  except in CI (.ci/run installs it), where that is a failure."""
  import pytest  # pylint: disable=g-import-not-at-top
  from tools import browser  # pylint: disable=g-import-not-at-top
  why = browser.missing()
  if why:
    if os.environ.get("CI"):
      pytest.fail(f"the page's browser test cannot run: {why}")
    pytest.skip(f"the page's browser test needs the browser: {why}")
  with browser.opened(page_path) as (page, requests, errors):
    result = act(page) if act else None
    if screenshot:
      page.screenshot(path=screenshot)
  return sorted(set(requests)), errors, result
