"""Today's update equals the update recorded before the cell refactor, from the same states.

tests/fixtures/course_updates.npz holds chains of TrainStates s_i -> s_{i+1}
computed by the code of commit ac42ee7 (recorded by the script in commit 609fd03,
`git show 609fd03:tests/fixtures/make_course_updates.py`; it needs that commit's API): the
course's settings (m = 100, T = 25, AdaGrad 0.1, clip 5, sigma 0.01, summed
loss, best = smooth loss) in float64, one stream (the first update, and
across an epoch boundary) and three streams. Each recorded s_i goes through
today's update and must give s_{i+1} to 1e-12.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import loop
from jax_charrnn.cells import rnn
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Params

from helpers import call_windows, load_course_fixture, strict_x64

FIXTURE = load_course_fixture()


def _params(d, prefix):
  return Params(layers=(rnn.Params(U=d[prefix + "U"], W=d[prefix + "W"], b=d[prefix + "b"]),),
                V=d[prefix + "V"], c=d[prefix + "c"])


def _state(cfg, net, tx, d) -> loop.TrainState:
  """Today's TrainState holding a recorded state's numbers."""
  fresh = loop.init_state(cfg, net, tx)
  opt = fresh.opt_state
  rss = opt.inner_state[1][0]._replace(sum_of_squares=_params(d, "sum_of_squares."))
  opt = opt._replace(count=jnp.asarray(d["opt_count"]),
                     hyperparams={"learning_rate": jnp.asarray(d["learning_rate"])},
                     inner_state=(opt.inner_state[0], (rss,) + tuple(opt.inner_state[1][1:])))
  as_jnp = lambda t: jax.tree.map(jnp.asarray, t)
  return loop.TrainState(
      params=as_jnp(_params(d, "params.")), opt_state=opt, carry=(jnp.asarray(d["h"]),),
      step=jnp.asarray(d["step"]), smooth_loss=jnp.asarray(d["smooth_loss"]),
      best_loss=jnp.asarray(d["best_loss"]), best_step=jnp.asarray(d["best_step"]),
      best_params=as_jnp(_params(d, "best_params.")), best_carry=(jnp.asarray(d["best_h"]),),
      best_x=jnp.asarray(d["best_x"]), key=jnp.asarray(d["key"]))


CASES = [(name, s) for name, (_, _, _, states) in FIXTURE.items() for s in sorted(states)
         if s + 1 in states]


@pytest.mark.parametrize("name,step", CASES)
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_the_course_update_is_unchanged(name, step, grad):
  config, inputs, targets, states = FIXTURE[name]
  with strict_x64():
    cfg = TrainConfig.from_dict(dict(config, grad=grad))
    vocab_size = int(states[step]["params.c"].shape[0])
    net = loop.build_model(cfg, vocab_size)
    tx = loop.make_optimizer(cfg, len(inputs))
    before = _state(cfg, net, tx, states[step])
    want = _state(cfg, net, tx, states[step + 1])
    window = call_windows(inputs, targets, int(before.step), 1)[0]
    got, metrics = loop.make_train_step(cfg, net, tx, len(inputs))(before, window)
    tol = 1e-12 if grad == "manual" else 1e-11  # jax.grad sums in another order
    named = jax.tree_util.tree_flatten_with_path(got)[0]
    for (path, a), b in zip(named, jax.tree.leaves(want)):
      a, b = np.asarray(a), np.asarray(b)
      # 1e-12 of the array's scale (entries near zero differ by rounding, not by 1e-12 of themselves)
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1e-3, np.abs(b).max()),
                                 err_msg=jax.tree_util.keystr(path))
    assert int(got.step) == step + 1
    assert np.isfinite(float(metrics.loss))
