"""The optax chain against the course's AdaGrad formula, written out in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_charrnn import optim
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Params


def _tree(rng, scale):
  return Params(*(scale * rng.standard_normal(s) for s in [(4, 3), (4, 4), (3, 4), (4,), (3,)]))


def test_adagrad_equals_the_course_formula_over_three_steps():
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    params = _tree(rng, 0.1)
    grads = [_tree(rng, 4.0) for _ in range(3)]  # many entries beyond +-5: clipping matters
    tx = optim.make_optimizer(TrainConfig(learning_rate=0.1, clip=5.0))
    state = tx.init(jax.tree.map(jnp.asarray, params))
    p = jax.tree.map(jnp.asarray, params)
    ref_p = [np.array(x) for x in params]
    G = [np.zeros_like(x) for x in ref_p]
    for g in grads:
      updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
      p = optax.apply_updates(p, updates)
      for i, gi in enumerate(g):
        gi = np.clip(gi, -5, 5)                         # clip each entry to [-5, 5]
        G[i] = G[i] + gi * gi                           # G += g^2
        ref_p[i] = ref_p[i] - 0.1 * gi / np.sqrt(G[i] + 1e-8)  # theta -= eta g / sqrt(G + eps)
      for got, want in zip(p, ref_p):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14, atol=1e-15)
    assert float(optim.learning_rate(state)) == 0.1


def test_optax_default_adagrad_is_not_the_course_formula():
  """Why the accumulator and eps are set: optax's defaults give another first step."""
  g = jnp.array([0.5])
  default = optax.adagrad(0.1)
  u, _ = default.update(g, default.init(g))
  course = -0.1 * 0.5 / np.sqrt(0.25 + 1e-8)
  assert abs(float(u[0]) - course) > 0.01


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_other_optimizers_clip_first(name):
  tx = optim.make_optimizer(TrainConfig(optimizer=name, learning_rate=0.01, clip=1.0))
  g = jnp.array([100.0, -0.5])
  ref = {"adam": optax.adam(0.01), "rmsprop": optax.rmsprop(0.01)}[name]
  u, _ = tx.update(g, tx.init(g))
  u_ref, _ = ref.update(jnp.clip(g, -1.0, 1.0), ref.init(g))
  np.testing.assert_allclose(u, u_ref, rtol=1e-6)
