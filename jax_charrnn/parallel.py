"""Devices and hosts: the mesh, where each piece of the state lives, the distributed runtime.

Data parallelism with JAX's own machinery: a 1-D mesh over devices with the
axis "data"; the streams (the batch axis B of the chunks and of the hidden
states) are split across it, the parameters and optimiser state are
replicated. The update's sums over streams then become all-reduces, which
XLA inserts itself: `loop.update` does not change.

Several hosts: `initialize` starts `jax.distributed`; every process runs the
same program on its share of the streams, and only process 0 writes files.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_charrnn.errors import UserError, paragraph

AXIS = "data"


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               timeout_s: int = 300) -> None:
  """Joins a multi-process run (no-op without a coordinator address and process count).

  On CPU the processes exchange data with gloo (TCP). With no arguments on a
  cluster that JAX can detect (SLURM, Cloud TPU, ...), use `auto=True` through
  `initialize_auto`.
  """
  if not coordinator_address:
    return
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise UserError(f"--process_id must lie in [0, --num_processes); got process {process_id} of "
                    f"{num_processes}.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  message = (
      f"Could not join the multi-process run at coordinator {coordinator_address!r} within "
      f"{timeout_s} s (this is process {process_id} of {num_processes}). Start all "
      f"{num_processes} processes with the same --coordinator_address (process 0's host and a "
      "free port) and --num_processes, or raise --distributed_timeout.")
  # When the others never come, JAX's runtime aborts the process from C++ at its
  # deadline, with a stack dump. This watchdog says what happened a little
  # earlier, in one paragraph, and exits.
  watchdog = threading.Timer(timeout_s, _exit_with, args=(message,))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s + 10)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{message} ({str(e).splitlines()[0][:300]})") from None
  finally:
    watchdog.cancel()


def _exit_with(message: str) -> None:
  sys.stderr.write(paragraph(message))
  sys.stderr.flush()
  os._exit(2)  # pylint: disable=protected-access


def initialize_auto(timeout_s: int = 300) -> None:
  """`jax.distributed.initialize()` with the cluster detected by JAX (SLURM, TPU pods, ...)."""
  try:
    jax.distributed.initialize(initialization_timeout=timeout_s)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"JAX could not detect a cluster to join ({str(e).splitlines()[0][:300]}). "
                    "Pass --coordinator_address, --num_processes and --process_id.") from None


def make_mesh(num_devices: int, batch_size: int) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices of all processes (0: all of them).

  Raises:
    UserError: more devices than exist, or a batch the devices cannot share evenly.
  """
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise UserError(
        f"--num_devices={n} but only {len(devices)} {devices[0].platform.upper()} device(s) "
        f"exist{' across all processes' if jax.process_count() > 1 else ''}. Use at most "
        f"{len(devices)} (0 means all). On a CPU, --cpu_devices=N splits the cores into N devices.")
  if n % jax.process_count():
    raise UserError(f"--num_devices={n} must be a multiple of the number of processes "
                    f"({jax.process_count()}).")
  if batch_size % n:
    raise UserError(
        f"--batch_size={batch_size} cannot be split evenly over {n} devices. Use a batch that "
        f"is a multiple of {n} (e.g. {max(n, batch_size // n * n)}), or --num_devices that "
        f"divides {batch_size}.")
  if jax.process_count() > 1:
    # Every process must hold the same number of the mesh's devices.
    per = n // jax.process_count()
    devices = [d for p in range(jax.process_count())
               for d in [d for d in devices if d.process_index == p][:per]]
  else:
    devices = devices[:n]
  return Mesh(np.array(devices), (AXIS,))


def run_sharding(num_runs: int, num_devices: int = 0) -> NamedSharding | None:
  """Splits a leading run axis (sweeps) over this process's devices, as evenly as they divide.

  None when one device is used (one device, or a run count no larger device
  count divides).
  """
  devices = jax.local_devices()
  n = min(num_devices or len(devices), len(devices))
  while n > 1 and num_runs % n:
    n -= 1
  if n == 1:
    return None
  return NamedSharding(Mesh(np.array(devices[:n]), ("runs",)), P("runs"))


def state_shardings(state: Any, mesh: Mesh) -> Any:
  """Carries split along the streams, everything else replicated.

  Knows the `loop.TrainState` fields whose leading axis is the batch: carry,
  best_carry (pytrees whose leaves are [B, ...]) and best_x [B].
  """
  replicated = NamedSharding(mesh, P())
  by_stream = NamedSharding(mesh, P(AXIS))
  shardings = jax.tree.map(lambda _: replicated, state)
  streams = lambda tree: jax.tree.map(lambda _: by_stream, tree)
  return shardings._replace(carry=streams(state.carry), best_carry=streams(state.best_carry),
                            best_x=by_stream)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Chunks [n, T, B]: the stream axis split over the devices."""
  return NamedSharding(mesh, P(None, None, AXIS))


def put(tree: Any, shardings: Any) -> Any:
  """Places a tree of host values (the same on every process) onto the mesh."""

  def one(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(one, tree, shardings)


def to_host(x: jax.Array) -> np.ndarray:
  """A global array as NumPy on this process (a collective when it is split across hosts)."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(x)
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def first_row(x: jax.Array) -> np.ndarray:
  """x[0] as NumPy, from this process's own shards (no collective).

  The rows of a carry are streams; stream 0 lives on process 0, so process 0
  can read it alone (it writes the samples).
  """
  if x.is_fully_addressable:
    return np.asarray(x[0])
  for shard in x.addressable_shards:
    rows = shard.index[0]
    if (rows.start or 0) == 0:
      return np.asarray(shard.data[0])
  raise ValueError("row 0 of this array lives on another process")


def tree_first_row(tree: Any) -> Any:
  """`first_row` of every leaf: stream 0 of a carry."""
  return jax.tree.map(first_row, tree)


def tree_to_host(tree: Any) -> Any:
  return jax.tree.map(to_host, tree)


def any_process(flag: bool) -> bool:
  """True on every process when `flag` is true on any of them (a collective)."""
  if jax.process_count() == 1:
    return flag
  flags = multihost_utils.process_allgather(np.array([flag], np.int32))
  return bool(np.asarray(flags).any())


def barrier(name: str) -> None:
  """Waits until every process gets here (a no-op in a single process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def is_primary() -> bool:
  """Process 0 writes logs, samples and reports (orbax coordinates checkpoints itself)."""
  return jax.process_index() == 0
