"""The optax chain against the course's AdaGrad formula; which optimisers may run on a flat vector."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jax_charrnn import optim

from helpers import NOT_STRICT_SAFE, strict_x64

SHAPES = [(4, 3), (4, 4), (3, 4), (4,), (3,)]


def _tree(rng, scale):
  return {name: jnp.asarray(scale * rng.standard_normal(s)) for name, s in zip("UWVbc", SHAPES)}


def test_adagrad_equals_the_course_formula_over_three_steps():
  rng = np.random.default_rng(0)
  with strict_x64():
    params = _tree(rng, 0.1)
    grads = [_tree(rng, 4.0) for _ in range(3)]  # many entries beyond +-5: clipping matters
    tx = optim.make_optimizer("adagrad", learning_rate=0.1, clip=5.0)
    state = tx.init(params)
    p = params
    ref_p = {k: np.array(v) for k, v in params.items()}
    G = {k: np.zeros_like(v) for k, v in ref_p.items()}
    for g in grads:
      updates, state = tx.update(g, state, p)
      p = optax.apply_updates(p, updates)
      for k, gk in g.items():
        gk = np.clip(np.asarray(gk), -5, 5)                     # clip each entry to [-5, 5]
        G[k] = G[k] + gk * gk                                   # G += g^2
        ref_p[k] = ref_p[k] - 0.1 * gk / np.sqrt(G[k] + 1e-8)  # theta -= eta g / sqrt(G + eps)
      for k in p:
        np.testing.assert_allclose(np.asarray(p[k]), ref_p[k], rtol=1e-14, atol=1e-15)
    assert float(optim.learning_rate(state)) == 0.1


def test_optax_default_adagrad_is_not_the_course_formula():
  """Why the accumulator and eps are set: optax's defaults give another first step."""
  g = jnp.array([0.5])
  default = optax.adagrad(0.1)
  u, _ = default.update(g, default.init(g))
  course = -0.1 * 0.5 / np.sqrt(0.25 + 1e-8)
  assert abs(float(u[0]) - course) > 0.01


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd", "adamw"])
def test_other_optimizers_clip_first(name):
  tx = optim.make_optimizer(name, learning_rate=0.01, clip=1.0,
                            weight_decay=0.1 if name == "adamw" else 0.0)
  g = {"w": jnp.array([[100.0, -0.5]]), "b": jnp.array([3.0])}
  p = {"w": jnp.ones((1, 2)), "b": jnp.ones(1)}
  ref = {"adam": optax.adam(0.01), "rmsprop": optax.rmsprop(0.01), "sgd": optax.sgd(0.01),
         "adamw": optax.adamw(0.01, weight_decay=0.1, mask=optim._matrices)}[name]
  u, _ = tx.update(g, tx.init(p), p)
  u_ref, _ = ref.update(jax.tree.map(lambda x: jnp.clip(x, -1.0, 1.0), g), ref.init(p), p)
  for k in u:
    np.testing.assert_allclose(u[k], u_ref[k], rtol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_the_elementwise_list_is_exactly_who_may_run_on_a_flat_vector(name):
  """The flat-vector trick (loop.py) is exact for an optimiser iff raveling the parameters
  changes none of its numbers: run three steps on the tree and on its raveled vector."""
  rng = np.random.default_rng(1)
  with strict_x64(strict=name not in NOT_STRICT_SAFE):
    params = _tree(rng, 0.5)
    grads = [_tree(rng, 2.0) for _ in range(3)]
    tx = optim.make_optimizer(name, learning_rate=0.05, clip=5.0,
                              weight_decay=0.5 if name == "adamw" else 0.0)
    flat, unravel = ravel_pytree(params)
    p, s, fp, fs = params, tx.init(params), flat, tx.init(flat)
    for g in grads:
      u, s = tx.update(g, s, p)
      p = optax.apply_updates(p, u)
      fu, fs = tx.update(ravel_pytree(g)[0], fs, fp)
      fp = optax.apply_updates(fp, fu)
    same = all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=0)
               for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(unravel(fp))))
  assert same == (name in optim.ELEMENTWISE), name


def test_adamw_decays_nothing_unless_asked_and_then_only_the_matrices():
  g = {"w": jnp.array([[0.5, -0.5]]), "b": jnp.array([0.5])}
  p = {"w": jnp.full((1, 2), 2.0), "b": jnp.full(1, 2.0)}
  plain = optim.make_optimizer("adamw", learning_rate=0.01, clip=5.0)  # no weight_decay given
  u, _ = plain.update(g, plain.init(p), p)
  u_adam, _ = optax.adam(0.01).update(g, optax.adam(0.01).init(p), p)
  for k in u:
    np.testing.assert_allclose(u[k], u_adam[k], rtol=1e-6)
  decayed = optim.make_optimizer("adamw", learning_rate=0.01, clip=5.0, weight_decay=0.1)
  u, _ = decayed.update(g, decayed.init(p), p)
  np.testing.assert_allclose(u["w"], u_adam["w"] - 0.01 * 0.1 * p["w"], rtol=1e-6)
  np.testing.assert_allclose(u["b"], u_adam["b"], rtol=1e-6)  # a bias is not decayed
