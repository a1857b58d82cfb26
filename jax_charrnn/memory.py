"""Will a network fit? A lower bound of its memory, checked before anything is built.

Every command that builds a network (train, sweep, gradcheck, evaluate,
sample, export, visualize) asks here first, so that a size that cannot fit is
a paragraph naming the estimate, not an allocation that runs until the system
kills it (XLA's CPU client aborts the process on a failed allocation).
"""

from __future__ import annotations

import os

import jax

from jax_charrnn import cells, errors
from jax_charrnn.config import TrainConfig


def estimate_bytes(config: TrainConfig, vocab_size: int, *, copies: int | None = None,
                   chars: int | None = None, itemsize: int | None = None) -> int:
  """A lower bound of a run's memory.

  params x copies (the parameters, the optimiser's slots, the gradients, the
  best copy and the flat copies of the fused loop: 5 + slots by default) plus
  every layer's stored activations for `chars` characters (one chunk of the
  run's streams by default), plus the regularisers' masks and what they make:
  dropout's mask and dropped output per layer [chars, H], input dropout's mask
  and masked one-hot vectors [chars, K], weight drop's mask and dropped W_hh
  per layer [G H, H].

  Args:
    config: the network's and the chunk's settings.
    vocab_size: K.
    copies: how many copies of the parameters the command holds.
    chars: characters whose activations are held at once.
    itemsize: bytes per number (default: the run's dtype).
  """
  H, K, L = config.hidden_size, vocab_size, config.num_layers
  # A cell outside the registry (a plug-in not registered in this process): an LSTM's 4 gates.
  G = cells.get(config.cell).gates if config.cell in cells.names() else 4
  params = G * H * (K + H + 2) + (L - 1) * G * H * (2 * H + 2) + K * H + K
  if copies is None:
    copies = 5 + {"adagrad": 1, "rmsprop": 1, "sgd": 0}.get(config.optimizer, 2)
  if chars is None:
    chars = config.seq_length * config.batch_size
  if itemsize is None:
    itemsize = 8 if config.dtype == "float64" else 4
  activations = chars * (L * H * (2 * G + 4) + 3 * K)
  masks = (chars * (2 * L * H * bool(config.dropout) + 2 * K * bool(config.input_dropout))
           + 2 * L * G * H * H * bool(config.weight_drop))
  return itemsize * (params * copies + activations + masks)


def check(need: int, what: str = "This run") -> None:
  """Refuses `need` bytes when they cannot fit the device's memory, with the estimate."""
  have = available_bytes()
  if have and need > 0.9 * have:
    raise errors.UserError(
        f"{what} needs about {need / 2**30:,.1f} GiB (parameters, their copies and the "
        f"activations of one chunk) and the device has {have / 2**30:,.1f} GiB. Use a smaller "
        "--hidden_size, --num_layers, --batch_size or --seq_length.")


def check_run(config: TrainConfig, vocab_size: int) -> None:
  """`check` of a training run's estimate."""
  check(estimate_bytes(config, vocab_size))


def gradcheck_lanes(config: TrainConfig, vocab_size: int, budget: int = 2**28,
                    most: int = 64) -> int:
  """How many perturbed losses gradcheck evaluates per call: as many as fit `budget` bytes.

  Each lane is counted as two float64 copies of all the parameters (it copies
  only the perturbed one, and its layer's intermediate products: a bound that
  holds whichever parameter it is) and one forward pass's activations;
  between 1 and `most` lanes (more add little speed, and a call stays short
  for Ctrl-C).
  """
  lane = estimate_bytes(config, vocab_size, copies=2, itemsize=8)
  return int(max(1, min(most, budget // max(lane, 1))))


def gradcheck_bytes(config: TrainConfig, vocab_size: int, lanes: int) -> int:
  """An estimate of gradcheck's float64 memory (what `check` compares with the device's).

  The parameters and their three gradients with the activations of the two
  backward passes (hand and jax.grad), plus `lanes` perturbed losses at once
  (`gradcheck_lanes`).
  """
  chars = config.seq_length * config.batch_size
  fixed = estimate_bytes(config, vocab_size, copies=4, chars=2 * chars, itemsize=8)
  return fixed + lanes * estimate_bytes(config, vocab_size, copies=2, chars=chars, itemsize=8)


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
