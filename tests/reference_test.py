"""jax_charrnn's update against two independent NumPy implementations (benchmarks/)."""

import jax
import numpy as np
import pytest

from benchmarks import numpy_ref
from jax_charrnn import data, loop
from jax_charrnn.config import TrainConfig

from helpers import TINY_TEXT, call_windows


@pytest.mark.parametrize("impl", ["gist", "vectorised"])
def test_numpy_references_train_exactly_like_jax_charrnn(impl):
  cfg = TrainConfig(hidden_size=12, seq_length=9, init_sigma=0.3, dtype="float64")
  vocab = data.Vocab.from_text(TINY_TEXT)
  inputs, targets = data.stream_chunks(vocab.encode(TINY_TEXT), cfg.seq_length, 1)
  n = inputs.shape[0] + 4  # across an epoch boundary
  with jax.enable_x64(True):
    net, tx = loop.build_model(cfg, vocab.size), loop.make_optimizer(cfg, inputs.shape[0])
    state = loop.init_state(cfg, net, tx)
    params = numpy_ref.course_arrays(state.params)
    ref = (numpy_ref.MinCharRNN(*params) if impl == "gist" else
           numpy_ref.NumpyCharRNN(*params, dtype=np.float64))
    h = np.zeros(cfg.hidden_size)
    step = loop.make_train_step(cfg, net, tx, inputs.shape[0])
    windows = call_windows(inputs, targets, 0, n)
    for s in range(n):
      e = s % inputs.shape[0]
      if e == 0:
        h = np.zeros_like(h)
      ref_loss, h = ref.update(h, inputs[e, :, 0], targets[e, :, 0])
      state, m = step(state, windows[s])
      np.testing.assert_allclose(float(m.loss), ref_loss, rtol=1e-8)
    for got, want in zip(numpy_ref.course_arrays(state.params), ref.params):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(state.carry[0][0]), h, rtol=1e-6, atol=1e-9)
