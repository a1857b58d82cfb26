"""Shared test set-up: CPU only, small shared fixtures."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after the environment is set)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_charrnn import data  # noqa: E402

# A short English text with repeated characters; every test that needs "a book" uses it.
TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog. " * 3
    + "harry looked at hermione, and hermione looked at ron.\n" * 4
)


@pytest.fixture(scope="session")
def tiny_text():
  return TINY_TEXT


@pytest.fixture(scope="session")
def tiny_vocab():
  return data.Vocab.from_text(TINY_TEXT)


@pytest.fixture()
def text_file(tmp_path):
  """Writes TINY_TEXT to a file and returns its path."""
  path = tmp_path / "book.txt"
  path.write_text(TINY_TEXT * 4, encoding="utf-8")
  return str(path)


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
