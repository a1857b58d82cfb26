"""The gradient check: never FAIL for a right gradient, never PASS for a wrong one.

Right gradients pass at the course's init (sigma 0.01, whose tiny recurrent gradients made
centred differences at a fixed step 1e-4 fail) and at PyTorch's; each kind of deliberately
wrong hand gradient fails against the finite differences alone; the command refuses a size
that cannot fit, stops on Ctrl-C, and README's examples pass. (tests/cli_test.py runs a wrong
gradient through the command line: --wrong=scale.)
"""

import re
import signal
import time

import jax
import numpy as np
import pytest

from jax_charrnn import data, gradcheck, memory
from jax_charrnn.config import TrainConfig

from helpers import REPO, TINY_TEXT, assert_user_error, read_until, run_module, start_module

VOCAB = data.Vocab.from_text(TINY_TEXT)

# Pairwise over cell x layers x dropout x init: every pair of values appears in some case.
MATRIX = [
    ("rnn", 1, 0.0, "normal"), ("rnn", 2, 0.3, "pytorch"), ("rnn", 3, 0.3, "normal"),
    ("lstm", 1, 0.3, "pytorch"), ("lstm", 2, 0.0, "normal"), ("lstm", 3, 0.0, "pytorch"),
    ("gru", 1, 0.0, "normal"), ("gru", 2, 0.3, "pytorch"), ("gru", 3, 0.3, "normal"),
]


def _config(cell="rnn", layers=2, dropout=0.0, init="normal", **kw):
  base = dict(cell=cell, num_layers=layers, dropout=dropout, init_dist=init, hidden_size=5,
              seq_length=10, seed=1)
  base.update(kw)
  return TrainConfig(**base)


def _wrong(how):
  """The hand BPTT made wrong, as a derivation can be: in every parameter's gradient, the
  largest entry off by a relative 1e-3 (entry) or of the wrong sign (sign), every entry 1% too
  large (scale), or a square gradient transposed (transpose)."""

  def wrong(g):
    g = np.array(g)
    largest = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    if how in ("entry", "sign"):
      g[largest] *= 1 + 1e-3 if how == "entry" else -1
    elif how == "scale":
      g *= 1.01
    elif g.ndim == 2 and g.shape[0] == g.shape[1]:
      g = g.T.copy()
    return g

  return lambda net, params, chunk: jax.tree.map(wrong, gradcheck.hand_bptt(net, params, chunk))


def _rows(config, wrong=None, **options):
  return gradcheck.check_text(TINY_TEXT, VOCAB, config, options=gradcheck.Options(**options),
                              hand=_wrong(wrong) if wrong else gradcheck.hand_bptt)


@pytest.mark.parametrize("cell,layers,dropout,init", MATRIX)
def test_right_gradients_pass_at_the_course_init_and_pytorch_init(cell, layers, dropout, init):
  rows = _rows(_config(cell, layers, dropout, init))
  table = gradcheck.format_table(rows, 1e-6)
  assert gradcheck.all_pass(rows, 1e-6), table
  for r in rows:
    assert r.manual_vs_autodiff <= 1e-10, table  # the two exact gradients stay exact
    # The finite differences' error is within the tolerance (so that a wrong gradient
    # shows), and their estimate of it is honest: jax.grad (exact) is within it.
    assert r.autodiff_vs_numerical <= 1e-6 and r.fd_error <= 2e-6, table
    assert r.autodiff_vs_numerical <= 2 * r.fd_error + 1e-12, table
  assert "FD error" in table and table.count(" ok") == 3 * len(rows)


def test_the_issue_case_a_fixed_small_step_cannot_see_tiny_gradients():
  """Issue 17: an LSTM's W_hh at sigma 0.01. At the fixed step 1e-4 the differences measure
  their own rounding (and say so); the pilot's step measures the gradient."""
  config = _config("lstm", 1, 0.3, hidden_size=8, seq_length=25)
  fixed = {r.name: r for r in _rows(config, step=1e-4)}
  piloted = {r.name: r for r in _rows(config)}
  for name in ("W_hh",):
    assert piloted[name].step > 1e-4 and piloted[name].autodiff_vs_numerical < 1e-7
    assert piloted[name].fd_error < fixed[name].fd_error / 10
    # A fixed step's error is large, but never larger than it says.
    assert fixed[name].autodiff_vs_numerical <= 2 * fixed[name].fd_error + 1e-6


@pytest.mark.parametrize("wrong,init", [("entry", "normal"), ("entry", "pytorch"),
                                        ("sign", "normal"), ("scale", "pytorch"),
                                        ("transpose", "normal")])
def test_every_kind_of_wrong_gradient_fails_against_the_finite_differences(wrong, init):
  # The matrix's configurations (compiled once: the tests share JAX's compilation cache).
  layers = {"normal": 3, "pytorch": 2}[init]
  rows = _rows(_config("rnn", layers, 0.3, init), wrong=wrong)
  table = gradcheck.format_table(rows, 1e-6)
  assert not gradcheck.all_pass(rows, 1e-6), table
  broken = [r for r in rows if wrong != "transpose" or
            (len(r.shape) == 2 and r.shape[0] == r.shape[1])]
  assert len(broken) == (2 * layers - 1 if wrong == "transpose" else len(rows)), table
  for r in broken:  # the numerical column alone would catch it (jax.grad not needed)
    assert r.manual_vs_numerical > 1e-6 + 2 * r.fd_error, table
    assert r.autodiff_vs_numerical <= 1e-6 + 2 * r.fd_error, table


def test_a_wrong_gradient_fails_when_entries_are_sampled():
  """The largest entry is always among the sampled ones, so a wrong one cannot hide."""
  rows = _rows(_config("lstm", 1, hidden_size=6), entries=7, wrong="entry")
  assert all(r.checked_entries == min(7, int(np.prod(r.shape))) for r in rows)
  assert all(r.manual_vs_numerical > 1e-6 + 2 * r.fd_error for r in rows)


def test_sampled_entries_include_the_focus_and_are_reproducible():
  config = _config("gru", 1)
  rows = _rows(config, entries=5)
  assert [r.checked_entries for r in rows] == [min(5, int(np.prod(r.shape))) for r in rows]
  again = _rows(config, entries=5)
  assert [r.autodiff_vs_numerical for r in rows] == [r.autodiff_vs_numerical for r in again]


def test_the_memory_estimate_grows_with_the_network_and_lanes_stay_bounded():
  small, big = _config(hidden_size=10), _config(hidden_size=1000)
  lanes_small, lanes_big = (memory.gradcheck_lanes(c, 50) for c in (small, big))
  assert lanes_small == 64 and 1 <= lanes_big < lanes_small
  need = memory.gradcheck_bytes(big, 50, lanes_big)
  # At least the float64 parameters four times over, plus each lane's copies.
  params = 8 * (1000 * (50 + 1000 + 2) + 1000 * (2 * 1000 + 2) + 50 * 1000 + 50)
  assert need >= (4 + 2 * lanes_big) * params
  assert memory.gradcheck_bytes(big, 50, lanes_big + 1) > need


@pytest.mark.slow
def test_a_network_that_cannot_fit_is_refused_with_a_paragraph():
  r = run_module("jax_charrnn.gradcheck", "--cell=lstm", "--hidden_size=50000", timeout=120)
  assert_user_error(r, "This gradient check needs about", "GiB", "--hidden_size")
  assert "\n\n" not in r.stderr.strip()  # one paragraph
  assert "Gradient check on" not in r.stdout  # refused before anything was built


@pytest.mark.slow
def test_ctrl_c_stops_between_calls_without_a_traceback():
  proc = start_module("jax_charrnn.gradcheck", "--hidden_size=60", "--num_layers=2",
                      "--entries=0")
  read_until(proc, "Gradient check on")
  sent = time.time()
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  waited = time.time() - sent
  assert proc.returncode == 130, out[-2000:] + err[-2000:]
  assert "Traceback" not in err and "Received SIGINT: stopping after the current call." in err
  assert "Interrupted." in err and "PASS" not in out and "FAIL" not in out
  assert waited < 60, waited  # the compiles, then one call (about a second when not shared)


def _readme_gradcheck_commands():
  """docs/gradcheck.md's commands (README's Documentation list links there)."""
  with open(f"{REPO}/docs/gradcheck.md", encoding="utf-8") as f:
    text = f.read()
  section = text[text.index("## The command"):]
  section = section[:section.index("\n## ", 5)]
  return re.findall(r"^python -m jax_charrnn\.gradcheck(.*?)(?:\s+#.*)?$", section, re.M)


def test_readme_shows_the_issue_commands():
  commands = [c.split() for c in _readme_gradcheck_commands()]
  assert ["--num_layers=3", "--hidden_size=20"] in commands
  assert ["--cell=lstm", "--num_layers=2", "--dropout=0.3"] in commands


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--num_layers=3", "--hidden_size=20"],
                                  ["--cell=lstm", "--num_layers=2", "--dropout=0.3"]])
def test_readme_examples_pass(args):
  """README's commands (the issue's), on 40 entries per parameter instead of 300 to keep the
  suite fast: the same network, chunk and steps; README's timings are of the full commands."""
  assert args in [c.split() for c in _readme_gradcheck_commands()]
  r = run_module("jax_charrnn.gradcheck", *args, "--entries=40", timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
  assert "PASS: all" in r.stdout and "FAIL" not in r.stdout
  assert "40 random entries per parameter" in r.stdout
