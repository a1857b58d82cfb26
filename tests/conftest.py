"""Test set-up: CPU only, and the pytest fixtures (shared helpers live in helpers.py)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile many identical programs (in-process and in the subprocesses that run
# the command lines, which inherit these variables); JAX's persistent compilation
# cache compiles each once per test session.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Token files (tokens.py) of the tests' texts go beside that cache, not into the user's.
os.environ.setdefault("JAX_CHARRNN_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "tokens"))
# The suite is mostly XLA compiling small programs: LLVM's lowest optimisation
# level compiles them about a third faster. It changes how fast the machine code
# runs, not what it computes (IEEE arithmetic either way, no fast-math); the
# benchmarks, not the tests, measure speed.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import pytest  # noqa: E402

from jax_charrnn import data  # noqa: E402

from helpers import SMALL_STEPS, SMALL_TEXT, TINY_TEXT, train_small, write_text  # noqa: E402


@pytest.fixture(scope="session")
def tiny_text():
  return TINY_TEXT


@pytest.fixture(scope="session")
def tiny_vocab():
  return data.Vocab.from_text(TINY_TEXT)


@pytest.fixture()
def text_file(tmp_path):
  """TINY_TEXT four times in a file; returns its path."""
  return write_text(tmp_path / "book.txt")


@pytest.fixture()
def strict_promotion():
  """Strict dtype promotion: a float32/float64 or int/float mix is an error, not a silent cast."""
  import jax  # pylint: disable=g-import-not-at-top
  with jax.numpy_dtype_promotion("strict"):
    yield


@pytest.fixture(scope="module")
def book(tmp_path_factory):
  """SMALL_TEXT in a file (one per test module); returns its path."""
  path = tmp_path_factory.mktemp("text") / "book.txt"
  path.write_text(SMALL_TEXT, encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def trained(book, tmp_path_factory):
  """A small run of SMALL_STEPS updates in one go (helpers.train_small; checkpoints at 10, 20,
  25); tests copy it (helpers.copy_run) to change it."""
  workdir = str(tmp_path_factory.mktemp("runs") / "run")
  r = train_small(book, workdir, f"--num_steps={SMALL_STEPS}")
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir
