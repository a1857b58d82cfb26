"""The cells table's bound (benchmarks/products.py): it does exactly the multiply-adds the table
counts, the same as the trainer's hand BPTT, for every cell and depth; its FLOP counter counts a
loop's body as many times as the loop runs; its fused loop is the update applied in turn."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks import products, train_speed
from jax_charrnn import bptt, cells, loop
from jax_charrnn.config import TrainConfig

H, B, T, K = 16, 4, 10, 7


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_bound_and_hand_bptt_do_the_counted_multiply_adds(cell, layers):
  blocks = cells.get(cell).blocks
  xs = jnp.zeros((T, B), jnp.int32)
  params = products.init(jax.random.key(0), blocks, layers, H, K)
  bound = products.dot_flops(jax.make_jaxpr(functools.partial(products.update, blocks=blocks))(
      params, xs))
  cfg = TrainConfig(cell=cell, hidden_size=H, batch_size=B, seq_length=T, num_layers=layers,
                    loss_reduction="mean")
  net = loop.build_model(cfg, K)
  state = loop.init_state(cfg, net, loop.make_optimizer(cfg, 1))
  hand = products.dot_flops(jax.make_jaxpr(
      lambda p, c, x, y: bptt.loss_and_grads(net, p, c, x, y, "mean"))(
          state.params, state.carry, xs, xs))
  assert bound == hand == train_speed.cell_flops_per_update(B, T, H, K, blocks, layers)


def test_dot_flops_counts_a_scan_body_once_per_step_and_a_product_more_is_seen():
  w = jnp.ones((3, 4))

  def looped(h):  # 5 steps of [2, 3] @ [3, 4] (then back to [2, 3]): 5 x 2 x 2 x 3 x 4
    return lax.scan(lambda h, _: ((h @ w)[:, :3], None), h, None, length=5)[0]

  h = jnp.ones((2, 3))
  assert products.dot_flops(jax.make_jaxpr(looped)(h)) == 240
  assert products.dot_flops(jax.make_jaxpr(lambda h: looped(h) @ w)(h)) == 240 + 48


def test_fused_loop_is_the_update_applied_in_turn():
  blocks, layers = 4, 2
  params = products.init(jax.random.key(1), blocks, layers, H, K)
  inputs = jax.random.randint(jax.random.key(2), (3, T, B), 0, K)
  run = products.make_run(blocks, steps=4)
  got = run(params, inputs, jnp.int32(2))
  want = params
  for i in range(2):
    want = products.update(want, inputs[i], blocks)
  for a, b, p in zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(params)):
    assert np.all(np.isfinite(np.asarray(a)))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)
    assert not np.array_equal(np.asarray(a), np.asarray(p))  # the updates changed the weights
