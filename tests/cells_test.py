"""LSTM and GRU cells: PyTorch's documented equations, and the hand BPTT proven three ways.

The NumPy references below are written from PyTorch's nn.LSTM / nn.GRU
documentation (gate rows i, f, g, o and r, z, n; the GRU's reset gate acting on
W_hn h + b_hn), not from the package.
"""

import itertools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from jax_charrnn import bptt, cells, gradcheck, model
from jax_charrnn.cells import lstm
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.model import Model

from helpers import strict_x64

pytestmark = pytest.mark.usefixtures("strict_promotion")
CELLS = ("rnn", "lstm", "gru")


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(W_ih, W_hh, b_ih, b_hh, h, c, x):
  """nn.LSTM's documented step for one input vector x."""
  z = W_ih @ x + b_ih + W_hh @ h + b_hh
  H = h.shape[0]
  i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
  c = f * c + i * g
  return o * np.tanh(c), c


def numpy_gru(W_ih, W_hh, b_ih, b_hh, h, x):
  """nn.GRU's documented step for one input vector x."""
  H = h.shape[0]
  a, u = W_ih @ x + b_ih, W_hh @ h + b_hh
  r = sigmoid(a[:H] + u[:H])
  z = sigmoid(a[H:2 * H] + u[H:2 * H])
  n = np.tanh(a[2 * H:] + r * u[2 * H:])
  return (1 - z) * n + z * h


def _net(cell, K=7, H=5, layers=1, dropout=0.0):
  return Model(cells.get(cell), vocab_size=K, hidden_size=H, num_layers=layers, dropout=dropout)


def _case(cell, T, B, seed, layers=1, dropout=0.0, K=7, H=5):
  """float64 parameters with every bias non-zero, a random carry, a chunk and dropout masks."""
  net = _net(cell, K, H, layers, dropout)
  p = net.init(jax.random.key(seed), InitSpec(dist="pytorch"), jnp.float64)
  rng = np.random.default_rng(seed)
  shape = (T,) if B is None else (T, B)
  carry = jax.tree.map(lambda c: jnp.asarray(0.5 * np.tanh(rng.standard_normal(c.shape)),
                                             jnp.float64),
                       net.zero_carry(() if B is None else (B,), jnp.float64))
  x = jnp.asarray(rng.integers(0, K, shape), jnp.int32)
  y = jnp.asarray(rng.integers(0, K, shape), jnp.int32)
  masks = net.dropout_masks(jax.random.key(seed + 1), shape, jnp.float64)
  return net, p, carry, x, y, masks


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_follows_pytorchs_documented_equations(cell):
  with strict_x64():
    net, p, carry, x, _, _ = _case(cell, T=6, B=None, seed=1)
    logits, carry_T = net.forward(p, carry, x)
    (W_ih, W_hh, b_ih, b_hh), = [tuple(np.asarray(a) for a in layer) for layer in p.layers]
    h = np.asarray(net.cell.output(carry[0]))
    c = np.asarray(carry[0].c) if cell == "lstm" else None
    for t, xt in enumerate(np.asarray(x)):
      onehot = np.eye(7)[xt]
      if cell == "lstm":
        h, c = numpy_lstm(W_ih, W_hh, b_ih, b_hh, h, c, onehot)
      else:
        h = numpy_gru(W_ih, W_hh, b_ih, b_hh, h, onehot)
      np.testing.assert_allclose(logits[t], np.asarray(p.V) @ h + np.asarray(p.c), rtol=1e-12)
    np.testing.assert_allclose(net.cell.output(carry_T[0]), h, rtol=1e-12)
    # One step at a time (as sampling runs) gives the same.
    step_logits, _ = net.step(p, carry, x[0])
    np.testing.assert_allclose(step_logits, logits[0], rtol=1e-12)


# T = 1 and T > 1, one stream and B > 1, sum and mean: each combination for one of the cells.
CASES = [("lstm", 1, None, "sum"), ("gru", 1, 3, "mean"), ("lstm", 9, 3, "sum"),
         ("gru", 9, None, "sum"), ("lstm", 9, None, "mean"), ("gru", 9, 3, "mean")]


@pytest.mark.parametrize("cell,T,B,reduction", CASES)
def test_hand_bptt_equals_jax_grad(cell, T, B, reduction):
  with strict_x64():
    net, p, carry, x, y, _ = _case(cell, T, B, seed=T + (B or 0))
    _check_manual_vs_autodiff(net, p, carry, x, y, reduction, None)


@pytest.mark.parametrize("cell,reduction", list(itertools.product(CELLS, ["sum", "mean"])))
def test_hand_bptt_equals_jax_grad_for_stacked_layers_with_dropout(cell, reduction):
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, T=8, B=2, seed=5, layers=3, dropout=0.4)
    assert len(masks.hidden) == 3  # the inputs of layers 2 and 3, and the read-out's
    _check_manual_vs_autodiff(net, p, carry, x, y, reduction, masks)


def _check_manual_vs_autodiff(net, p, carry, x, y, reduction, masks):
  (l1, c1), g1 = jax.jit(bptt.loss_and_grads, static_argnums=(0, 5))(net, p, carry, x, y,
                                                                     reduction, masks)
  (l2, c2), g2 = jax.jit(jax.value_and_grad(net.loss, has_aux=True), static_argnums=4)(
      p, carry, x, y, reduction, masks)
  np.testing.assert_allclose(l1, l2, rtol=1e-12)
  for a, b in zip(jax.tree.leaves(c1), jax.tree.leaves(c2)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  assert jax.tree.structure(g1) == jax.tree.structure(g2)
  for (name, a), (_, b) in zip(model.named_leaves(g1), model.named_leaves(g2)):
    assert gradcheck.relative_error(a, b, eps=1e-30) < 1e-10, name


@pytest.mark.parametrize("cell,layers,dropout,B", [
    ("lstm", 1, 0.0, None), ("gru", 1, 0.0, None),
    ("lstm", 2, 0.3, 2), ("gru", 2, 0.3, 2), ("rnn", 2, 0.3, 2)])
def test_three_ways_against_finite_differences(cell, layers, dropout, B):
  with strict_x64():
    net, p, carry, x, y, masks = _case(cell, T=6, B=B, seed=7, layers=layers, dropout=dropout,
                                       H=4)
    rows = gradcheck.check(net, p, gradcheck.Chunk(carry, x, y, "mean" if B else "sum", masks))
  assert len(rows) == 4 * layers + 2 if cell != "rnn" else 3 * layers + 2
  for r in rows:
    assert r.manual_vs_autodiff < 1e-10, r
    assert r.manual_vs_numerical < 1e-6 and r.autodiff_vs_numerical < 1e-6, r


def test_dropout_masks():
  net = _net("lstm", H=50, layers=2, dropout=0.3)
  masks = net.dropout_masks(jax.random.key(0), (40, 8)).hidden
  assert len(masks) == 2 and masks[0].shape == (40, 8, 50)
  values = np.unique(np.asarray(masks[0]))
  np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)
  assert abs(float((np.asarray(masks[1]) == 0).mean()) - 0.3) < 0.02
  again = net.dropout_masks(jax.random.key(0), (40, 8)).hidden
  other = net.dropout_masks(jax.random.key(1), (40, 8)).hidden
  np.testing.assert_array_equal(masks[0], again[0])
  assert not np.array_equal(masks[0], other[0])
  assert _net("lstm").dropout_masks(jax.random.key(0), (4,)) is None


def test_lstm_forget_bias_and_pytorch_init_bounds():
  p = lstm.init(jax.random.key(0), 10, 16, spec=InitSpec(dist="pytorch", forget_bias=1.0),
                dtype=jnp.float32)
  bound = 1 / 4.0
  for a in (p.W_ih, p.W_hh, p.b_hh):
    assert float(jnp.abs(a).max()) <= bound
  assert float(p.b_ih[16:32].min()) >= 1 - bound and float(p.b_ih[16:32].max()) <= 1 + bound
  # Only the forget gate's rows (i, f, g, o: the second block of H) are shifted.
  others = np.concatenate([np.asarray(p.b_ih[:16]), np.asarray(p.b_ih[32:])])
  assert np.abs(others).max() <= bound


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pytorch_gets_the_same_outputs_and_gradients(cell):
  torch = pytest.importorskip("torch")
  from jax_charrnn import export  # pylint: disable=g-import-not-at-top
  from jax_charrnn.data import Vocab  # pylint: disable=g-import-not-at-top
  with strict_x64():
    net, p, _, x, y, _ = _case(cell, T=12, B=None, seed=3, layers=2, K=7, H=5)
    vocab = Vocab(tuple("abcdefg"))
    arrays = export.state_dict(net, p, vocab)
    (loss, _), grads = bptt.loss_and_grads(net, p, net.zero_carry((), jnp.float64), x, y)
  rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](7, 5, num_layers=2).double()
  decoder = torch.nn.Linear(5, 7).double()
  rnn.load_state_dict({k[4:]: torch.tensor(v, dtype=torch.float64) for k, v in arrays.items()
                       if k.startswith("rnn.")})
  decoder.load_state_dict({k[8:]: torch.tensor(v, dtype=torch.float64)
                           for k, v in arrays.items() if k.startswith("decoder.")})
  # The export is float32: compare against JAX run on those float32-rounded numbers.
  onehot = torch.nn.functional.one_hot(torch.tensor(np.asarray(x)).long(), 7).double()[:, None]
  hs, _ = rnn(onehot)
  logits = decoder(hs[:, 0])
  torch_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(np.asarray(y)).long(),
                                                 reduction="sum")
  torch_loss.backward()
  with strict_x64():
    p32 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32), jnp.float64), p)
    (loss32, _), g32 = bptt.loss_and_grads(net, p32, net.zero_carry((), jnp.float64), x, y)
  np.testing.assert_allclose(float(loss32), torch_loss.item(), rtol=1e-10)
  np.testing.assert_allclose(np.asarray(g32.layers[0].W_hh), rnn.weight_hh_l0.grad.numpy(),
                             rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(np.asarray(g32.layers[1].W_ih), rnn.weight_ih_l1.grad.numpy(),
                             rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(np.asarray(g32.V), decoder.weight.grad.numpy(), rtol=1e-8,
                             atol=1e-12)
  assert abs(float(loss) - float(loss32)) < 1e-3  # and the float64 original is close


@pytest.mark.parametrize("cell,blocks", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_blocks_count_the_weight_blocks_pytorch_stacks(cell, blocks):
  # G is PyTorch's: nn.RNN 1, nn.LSTM 4 (i, f, g, o), nn.GRU 3 (r, z, n); the memory
  # estimate, weight drop's masks and the benchmark's FLOP count use it.
  c = cells.get(cell)
  assert c.blocks == blocks
  p = c.init(jax.random.key(0), 7, 5, spec=InitSpec(dist="pytorch"), dtype=jnp.float32)
  exported = c.export(p)
  assert exported["weight_ih"].shape == (blocks * 5, 7)
  assert exported["weight_hh"].shape == (blocks * 5, 5)
  assert cells.Cell("x", c.init, c.zero_carry, c.output, c.step).blocks == 1  # the default


@pytest.mark.parametrize("cell", CELLS)
def test_stepping_one_character_at_a_time_equals_the_chunk_forward(cell):
  # Sampling runs `step`; training and scoring run `forward`: the same network either way
  # (two layers, two streams, every bias non-zero, a non-zero carry).
  with strict_x64():
    net, p, carry, x, _, _ = _case(cell, T=5, B=2, seed=3, layers=2)
    logits, carry_T = net.forward(p, carry, x)
    c = carry
    for t in range(5):
      step_logits, c = net.step(p, c, x[t])
      np.testing.assert_allclose(step_logits, logits[t], rtol=1e-12, atol=1e-14)
    for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(carry_T)):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_pytorch_init_fills_its_whole_range_and_shifts_no_gate_unless_asked(cell):
  # U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias: spread over the range, not
  # merely inside it; the default InitSpec adds no forget-gate bias.
  H = 16
  p = cells.get(cell).init(jax.random.key(0), 10, H, spec=InitSpec(dist="pytorch"),
                           dtype=jnp.float32)
  for name, a in p._asdict().items():
    a = np.asarray(a)
    assert np.abs(a).max() <= 0.25 and np.abs(a).max() > 0.2, name
    assert abs(a.mean()) < 0.05 and a.std() > 0.1, name  # U(-b, b): mean 0, std b/sqrt(3)


def test_an_id_outside_the_vocabulary_enters_as_a_zero_vector():
  # evaluate feeds characters the model never saw as id K: no input at all, not a row of W.
  from jax_charrnn.cells import ops  # pylint: disable=g-import-not-at-top
  w = jnp.arange(12.0).reshape(3, 4) + 1.0  # [H = 3, K = 4]
  out = ops.project(w, jnp.array([1, 4, 0]))
  np.testing.assert_array_equal(out, [[2.0, 6.0, 10.0], [0.0, 0.0, 0.0], [1.0, 5.0, 9.0]])


@pytest.mark.parametrize("cell", CELLS)
def test_every_cells_forward_takes_an_id_outside_the_vocabulary_as_a_zero_vector(cell):
  # The LSTM and GRU gather their input columns inside their time loops, the RNN before its
  # loop: either way id K is no input, the same as a real column of zeros at index K.
  c = cells.get(cell)
  K, H = 5, 3
  with strict_x64():
    p = c.init(jax.random.key(0), K, H, spec=InitSpec(dist="pytorch"), dtype=jnp.float64)
    padded = jax.tree.map(lambda w: jnp.pad(w, ((0, 0), (0, 1))) if w.shape[-1:] == (K,) else w,
                          p)
    carry = c.zero_carry(H, (2,), jnp.float64)
    xs = jnp.array([[1, K], [K, 0], [4, 2]])
    hs, last, _ = c.forward(p, carry, xs)
    hs_padded, last_padded, _ = c.forward(padded, carry, xs)
  np.testing.assert_array_equal(hs, hs_padded)
  for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(last_padded)):
    np.testing.assert_array_equal(a, b)


def test_the_outer_product_sums_agree_with_their_definition_for_any_stream_axes():
  # sum_outer transposes whichever operand is narrower; sum_outer_T reads b already transposed
  # (store_T's layout): all are sum over t and streams of a_t b_t^T.
  from jax_charrnn.cells import ops  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  with strict_x64():
    for i, j in [(8, 3), (3, 8), (4, 4)]:
      a = jnp.asarray(rng.standard_normal((5, 2, 3, i)))
      b = jnp.asarray(rng.standard_normal((5, 2, 3, j)))
      want = np.einsum("tpqi,tpqj->ij", a, b)
      np.testing.assert_allclose(ops.sum_outer(a, b), want, rtol=1e-12)
      b_T = jnp.zeros((j, 5, 2, 3), jnp.float64)
      for t in range(5):
        b_T = ops.store_T(b_T, t, b[t])
      np.testing.assert_array_equal(b_T, np.moveaxis(b, -1, 0))
      np.testing.assert_allclose(ops.sum_outer_T(a, b_T), want, rtol=1e-12)


@pytest.mark.parametrize("streams", [(), (2, 3)])
def test_the_stores_fill_their_buffers_inside_a_jitted_time_loop(streams):
  # What the LSTM's and GRU's loops do with them, in float64 (x64 on: the loop's t is int64).
  from jax_charrnn.cells import ops  # pylint: disable=g-import-not-at-top
  T, n = 4, 3
  a = np.random.default_rng(1).standard_normal((T, *streams, n))

  @jax.jit
  def fill(a):
    def step(buffers, t):
      blocks, a_T = buffers
      blocks = ops.store(ops.store(blocks, t, a[t], 0), t, 2.0 * a[t], n)
      return (blocks, ops.store_T(a_T, t, a[t])), None
    empty = (jnp.zeros((T, *streams, 2 * n)), jnp.zeros((n, T, *streams)))
    return lax.scan(step, empty, jnp.arange(T), reverse=True)[0]

  with strict_x64():
    blocks, a_T = fill(jnp.asarray(a))
  np.testing.assert_array_equal(blocks, np.concatenate([a, 2.0 * a], axis=-1))
  np.testing.assert_array_equal(a_T, np.moveaxis(a, -1, 0))


@pytest.mark.parametrize("cell,dist", list(itertools.product(CELLS, ["pytorch", "normal"])))
def test_every_parameter_block_has_its_own_random_draws(cell, dist):
  # Two blocks drawn with one key would share their leading numbers (JAX's counter-based
  # generator: the i-th number depends on the key and i only), e.g. W_ih and W_hh equal
  # row for row: a broken initialisation that trains, badly, without any error.
  net = _net(cell, K=7, H=5, layers=2)
  p = net.init(jax.random.key(0), InitSpec(dist=dist, sigma=0.1), jnp.float32)
  heads = {name: tuple(np.round(np.abs(np.asarray(a).ravel()[:3]), 6))
           for name, a in model.named_leaves(p) if np.any(np.asarray(a) != 0)}
  if dist == "pytorch":  # every weight and bias drawn (the course's biases are zeros)
    assert len(heads) == len(jax.tree.leaves(p))
  assert len(set(heads.values())) == len(heads), heads


@pytest.mark.parametrize("cell", CELLS)
def test_trace_names_what_the_documented_equations_compute_at_every_step(cell):
  # Model.trace (what visualize.py colours text by) against nn.RNN / nn.LSTM / nn.GRU's
  # documented equations written out step by step: two layers, one stream, a non-zero carry.
  with strict_x64():
    net, p, carry, x, _, _ = _case(cell, T=6, B=None, seed=4, layers=2)
    logits, carry_T, layers = net.trace(p, carry, x)
    want_logits, want_carry = net.forward(p, carry, x)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-12)
  for a, b in zip(jax.tree.leaves(carry_T), jax.tree.leaves(want_carry)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  kinds = {"rnn": (["h"], []), "lstm": (["c", "h"], ["i", "f", "o"]), "gru": (["h"], ["r", "z"])}
  assert [(list(l["units"]), list(l["gates"])) for l in layers] == [kinds[cell]] * 2
  state = [jax.tree.map(np.asarray, c) for c in carry]
  for t, xt in enumerate(np.asarray(x)):
    inp = np.eye(7)[xt]
    for k, w in enumerate(p.layers):
      w = [np.asarray(a) for a in w]
      h_prev = state[k] if cell != "lstm" else state[k].h
      if cell == "rnn":  # U, W, b
        h = np.tanh(w[0] @ inp + w[1] @ h_prev + w[2])
        want_units, want_gates, state[k] = {"h": h}, {}, h
      elif cell == "lstm":
        W_ih, W_hh, b_ih, b_hh = w
        z = W_ih @ inp + b_ih + W_hh @ h_prev + b_hh
        i, f, o = sigmoid(z[:5]), sigmoid(z[5:10]), sigmoid(z[15:])
        h, c = numpy_lstm(W_ih, W_hh, b_ih, b_hh, h_prev, state[k].c, inp)
        want_units, want_gates = {"c": c, "h": h}, {"i": i, "f": f, "o": o}
        state[k] = lstm.Carry(h=h, c=c)
      else:
        W_ih, W_hh, b_ih, b_hh = w
        a, u = W_ih @ inp + b_ih, W_hh @ h_prev + b_hh
        want_gates = {"r": sigmoid(a[:5] + u[:5]), "z": sigmoid(a[5:10] + u[5:10])}
        h = numpy_gru(W_ih, W_hh, b_ih, b_hh, h_prev, inp)
        want_units, state[k] = {"h": h}, h
      for group, want in (("units", want_units), ("gates", want_gates)):
        for name, v in want.items():
          np.testing.assert_allclose(layers[k][group][name][t], v, rtol=1e-12, atol=1e-14,
                                     err_msg=f"layer {k + 1} {name} at t = {t}")
      inp = h


def test_trace_of_a_cell_without_one_shows_its_outputs():
  c = cells.get("rnn")
  plain = cells.Cell("plain", c.init, c.zero_carry, c.output, c.step)  # no forward, no trace
  net = Model(plain, vocab_size=7, hidden_size=5, num_layers=2)
  p = net.init(jax.random.key(0), InitSpec(dist="pytorch"))
  x = jnp.array([1, 2, 3, 0])
  logits, _, layers = net.trace(p, net.zero_carry(), x)
  all_hs, _, _ = net.hidden_states(p, net.zero_carry(), x)
  assert [(list(l["units"]), l["gates"]) for l in layers] == [(["h"], {})] * 2
  for layer, hs in zip(layers, all_hs):
    np.testing.assert_array_equal(layer["units"]["h"], hs)
  np.testing.assert_allclose(logits, net.forward(p, net.zero_carry(), x)[0], rtol=1e-6)
