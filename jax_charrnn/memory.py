"""Will a network fit? Its memory, checked before anything is built.

Every command that builds a network (train, sweep, gradcheck, evaluate,
sample, export, visualize) asks here first, so that a size that cannot fit is
a paragraph naming the estimate, not an allocation that runs until the system
kills it (XLA's CPU client aborts the process on a failed allocation).

What is exact comes from `jax.eval_shape` (no array is made): the training
state (`loop.init_state`: the parameters, the optimiser's state, the best copy,
the carries) and the parameters' count. What the update makes on top of them
is a lower bound: the gradients and the fused loop's flat copies of the
parameters and of the best copy (three more copies of the parameters), every
layer's stored activations for the characters read at once, and the
regularisers' masks with what they make.
"""

from __future__ import annotations

import contextlib
import os

import jax
import optax

from jax_charrnn import cells, errors, loop
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Model

# Copies of the parameters the update holds beyond the state: the gradients, and the fused
# loop's flat vectors of the parameters and of the best copy.
UPDATE_COPIES = 3


def _x64(config: TrainConfig):
  """64-bit JAX while a float64 network's shapes are traced (nothing is computed)."""
  return jax.enable_x64(True) if config.dtype == "float64" else contextlib.nullcontext()


def state_bytes(config: TrainConfig, net: Model, tx: optax.GradientTransformation) -> int:
  """The training state's bytes, exactly: `jax.eval_shape` of `loop.init_state`."""
  with _x64(config):
    state = jax.eval_shape(lambda: loop.init_state(config, net, tx))
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


def param_count(config: TrainConfig, vocab_size: int) -> int:
  """The network's parameters, exactly (`jax.eval_shape` of its initialisation)."""
  return _param_count(config, loop.build_model(config, vocab_size))


def _param_count(config: TrainConfig, net: Model) -> int:
  params = jax.eval_shape(lambda: net.init(jax.random.key(0), loop.init_spec(config)))
  return sum(x.size for x in jax.tree.leaves(params))


def _activations(config: TrainConfig, vocab_size: int, chars: int) -> int:
  """Numbers held per chunk of `chars` characters: every layer's stored activations (2G + 4
  per unit: the gates' values and their derivatives, h, c and their gradients), the logits,
  their softmax and its gradient, and the regularisers' masks with what they make: dropout's
  mask and dropped output per layer [chars, H], input dropout's mask and masked one-hot
  vectors [chars, K], weight drop's mask and dropped W_hh per layer [G H, H]."""
  H, K, L = config.hidden_size, vocab_size, config.num_layers
  G = cells.get(config.cell).blocks
  masks = (chars * (2 * L * H * bool(config.dropout) + 2 * K * bool(config.input_dropout))
           + 2 * L * G * H * H * bool(config.weight_drop))
  return chars * (L * H * (2 * G + 4) + 3 * K) + masks


def _itemsize(config: TrainConfig) -> int:
  return 8 if config.dtype == "float64" else 4


def estimate_bytes(config: TrainConfig, net: Model, tx: optax.GradientTransformation) -> int:
  """A lower bound of a training run's memory: its state (exact) plus what an update makes
  (UPDATE_COPIES of the parameters, and the activations and masks of one chunk of every
  stream). net and tx: the run's network and optimiser (loop.build_model, make_optimizer)."""
  chars = config.seq_length * config.batch_size
  made = (UPDATE_COPIES * _param_count(config, net)
          + _activations(config, net.vocab_size, chars))
  return state_bytes(config, net, tx) + _itemsize(config) * made


def check(need: int, what: str = "This run") -> None:
  """Refuses `need` bytes when they cannot fit the device's memory, with the estimate."""
  have = available_bytes()
  if have and need > 0.9 * have:
    raise errors.UserError(
        f"{what} needs about {need / 2**30:,.1f} GiB (parameters, their copies and the "
        f"activations of one chunk) and the device has {have / 2**30:,.1f} GiB. Use a smaller "
        "--hidden_size, --num_layers, --batch_size or --seq_length.")


def check_run(config: TrainConfig, net: Model, tx: optax.GradientTransformation, runs: int = 1,
              what: str = "This run") -> None:
  """`check` of `runs` training runs' estimate (a sweep holds every run's)."""
  check(runs * estimate_bytes(config, net, tx), what)


def gradcheck_lanes(config: TrainConfig, vocab_size: int, budget: int = 2**28,
                    most: int = 64) -> int:
  """How many perturbed losses gradcheck evaluates per call: as many as fit `budget` bytes.

  Each lane is counted as two float64 copies of all the parameters (it copies
  only the perturbed one, and its layer's intermediate products: a bound that
  holds whichever parameter it is) and one forward pass's activations;
  between 1 and `most` lanes (more add little speed, and a call stays short
  for Ctrl-C).
  """
  lane = _gradcheck_lane(config, vocab_size)
  return int(max(1, min(most, budget // max(lane, 1))))


def _gradcheck_lane(config: TrainConfig, vocab_size: int) -> int:
  chars = config.seq_length * config.batch_size
  return 8 * (2 * param_count(config, vocab_size) + _activations(config, vocab_size, chars))


def gradcheck_bytes(config: TrainConfig, vocab_size: int, lanes: int) -> int:
  """An estimate of gradcheck's float64 memory (what `check` compares with the device's).

  The parameters and their three gradients with the activations of the two
  backward passes (hand and jax.grad), plus `lanes` perturbed losses at once
  (`gradcheck_lanes`).
  """
  chars = config.seq_length * config.batch_size
  fixed = 8 * (4 * param_count(config, vocab_size) + _activations(config, vocab_size, 2 * chars))
  return fixed + lanes * _gradcheck_lane(config, vocab_size)


def available_bytes() -> int:
  """The device's memory limit (an accelerator's), else the machine's RAM; 0 if unknown."""
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(stats["bytes_limit"])
  except Exception:  # pylint: disable=broad-except  (CPU devices have no memory stats)
    pass
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    return 0
