"""The plug-in point: a cell defined only here (no hand BPTT, a dict carry) trains,
checkpoints, resumes exactly, samples and sweeps, with no package file changed."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, generate, runfiles, trainer
from jax_charrnn.cells import ops
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import assert_trees_close, load_run


class LeakyParams(NamedTuple):
  Wx: jax.Array  # [H, in]
  Wh: jax.Array  # [H, H]
  bias: jax.Array  # [H]


def _init(key, input_size, hidden_size, *, spec, dtype):
  kx, kh = jax.random.split(key)
  return LeakyParams(ops.draw(kx, (hidden_size, input_size), spec, hidden_size, dtype),
                     ops.draw(kh, (hidden_size, hidden_size), spec, hidden_size, dtype),
                     jnp.zeros((hidden_size,), dtype))


def _zero_carry(hidden_size, batch_shape=(), dtype=jnp.float32):
  z = jnp.zeros((*batch_shape, hidden_size), dtype)
  return {"h": z, "avg": z}


def _step(p, carry, x):
  """h' = (h + tanh(Wh h + Wx x + bias)) / 2; avg' = 0.9 avg + 0.1 h' (a leaky cell, a dict carry)."""
  h = 0.5 * carry["h"] + 0.5 * jnp.tanh(carry["h"] @ p.Wh.T + ops.project(p.Wx, x) + p.bias)
  return {"h": h, "avg": 0.9 * carry["avg"] + 0.1 * h}


def _output(carry):
  return carry["h"] + carry["avg"]


LEAKY = cells.register(cells.Cell("leaky_test", _init, _zero_carry, _output, _step))


def _config(text_file, **kw):
  base = dict(data_path=text_file, cell="leaky_test", grad="autodiff", hidden_size=12,
              seq_length=10, num_steps=60, steps_per_call=16, log_every=10, sample_every=0,
              report_every=30, checkpoint_every=30, sample_length=20, passage_length=30,
              report_gradcheck_entries=5, init_sigma=0.3, batch_size=2)
  base.update(kw)
  return TrainConfig(**base)


def test_a_cell_from_outside_the_package_trains_resumes_exactly_and_samples(text_file, tmp_path):
  quiet = dict(report_gradcheck_entries=0)  # the report's gradient check once is enough
  straight = trainer.train(_config(text_file, num_steps=80, **quiet), str(tmp_path / "a"))
  half = str(tmp_path / "b")
  trainer.train(_config(text_file, num_steps=40, **quiet), half)
  resumed = trainer.train(_config(text_file, num_steps=80), half)
  assert_trees_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)
  assert set(resumed.state.carry[0]) == {"h", "avg"}
  rows = runfiles.read_metrics(half)
  assert rows[-1]["smooth_loss"] < rows[0]["smooth_loss"]
  md = open(f"{half}/report.md", encoding="utf-8").read()
  assert "1 layer of leaky_test, H = 12" in md and "n/a (no hand BPTT)" in md
  net, params, vocab, carry, x0, _ = load_run(half, "best")
  assert net.cell is LEAKY and set(carry[0]) == {"h", "avg"}
  text, = generate.generate(net, params, vocab, carry, x0, 40, jax.random.key(0), prime="the ")
  assert text.startswith("the ") and len(text) == 44


def test_a_cell_from_outside_the_package_sweeps(text_file, tmp_path):
  results = trainer.sweep(_config(text_file, num_steps=30, report_gradcheck_entries=0,
                                  num_layers=2), [0.05, 0.2], [0], str(tmp_path / "sw"))
  assert [r.record.name for r in results] == ["lr0.05_seed0", "lr0.2_seed0"]
  assert all(np.isfinite(r.record.smooth_loss) for r in results)
  net, *_ = load_run(str(tmp_path / "sw" / "lr0.2_seed0"), "latest")
  assert net.num_layers == 2 and net.cell.name == "leaky_test"


def test_asking_for_the_hand_gradient_of_such_a_cell_is_a_clear_error(text_file):
  with pytest.raises(UserError, match="'leaky_test' cell has no hand-derived BPTT"):
    _config(text_file, grad="manual")
