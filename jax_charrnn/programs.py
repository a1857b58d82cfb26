"""The compiled programs the host loop drives: one run on a device mesh, or many runs at once.

Both do what `Program` says: `advance(n)` runs n updates of every run inside
one jitted call (loop.py's fused loop) and returns their losses; `state_of(r)`
gives run r's state; `learning_rates()`, `keep_best` and `freeze` serve the
metrics, the held-out best copy and a diverged run. The host loop does not know
which one it drives.

Both read the text through a `Feed`: each call's windows (walk.Corpus.windows)
read on the host and put on the devices one call ahead, while the device runs
the call before; the device holds the current call's windows and the next's,
nothing that grows with the text. On several hosts each process reads only its
own streams' windows.
"""

from __future__ import annotations

import time
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_charrnn import loop, optim, parallel, walk
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Model


class Program(Protocol):
  """A compiled training program for R runs that share the data (R = 1 for train)."""

  num_runs: int
  devices: int
  compile_seconds: float

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs n updates of every run; returns (losses, smooth losses), float [R, n]."""

  def state_of(self, r: int) -> loop.TrainState:
    """Run r's state (device arrays; sharded over the mesh for a lone run)."""

  def learning_rates(self) -> np.ndarray:
    """Every run's learning rate, read from its optimiser state, [R]."""

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    """Makes run r's current parameters (and carry, and next characters [B]) its best copy."""

  def freeze(self, r: int) -> None:
    """Stops run r's training where it is: its base learning rate becomes 0 (its parameters
    and best copy stay as they are; the program goes on for the others)."""


class Feed:
  """Each call's windows of the text, read on the host and placed where the program reads them.

  `take(step)` gives the windows of updates step .. step + count - 1 ([count, T + 1, B] on
  the devices); `ahead(step)` reads and places them now, to be taken by the next call (the
  device works on this call meanwhile: JAX dispatches it without waiting).
  """

  def __init__(self, corpus: walk.Corpus, count: int, sharding=None):
    self.corpus, self.count, self.sharding = corpus, count, sharding
    shape = (count, corpus.seq_length + 1, corpus.batch_size)
    self.shape = shape
    self.streams = range(corpus.batch_size)
    if sharding is not None and not sharding.is_fully_replicated:
      columns = [idx[2] for idx in sharding.addressable_devices_indices_map(shape).values()]
      self.streams = range(min(c.start or 0 for c in columns),
                           max(shape[2] if c.stop is None else c.stop for c in columns))
    self._next: tuple[int, jax.Array] | None = None

  def _place(self, step: int) -> jax.Array:
    local = self.corpus.windows(step, self.count, self.streams)
    if self.sharding is None:
      return jnp.asarray(local)
    if self.sharding.is_fully_replicated:
      return jax.device_put(local, self.sharding)
    return jax.make_array_from_process_local_data(self.sharding, local, self.shape)

  def abstract(self) -> jax.ShapeDtypeStruct:
    """What `take` gives, without reading it (to compile for)."""
    return jax.ShapeDtypeStruct(self.shape, jnp.int32, sharding=self.sharding)

  def take(self, step: int) -> jax.Array:
    if self._next is not None and self._next[0] == step:
      windows, self._next = self._next[1], None
      return windows
    return self._place(step)

  def ahead(self, step: int) -> None:
    self._next = (step, self._place(step))


def _compiled(fn, state, windows: jax.ShapeDtypeStruct):
  """(fn lowered and compiled for these arguments, the seconds it took)."""
  t = time.perf_counter()
  compiled = fn.lower(state, windows, jnp.int32(1)).compile()
  return compiled, time.perf_counter() - t


def _frozen(state: loop.TrainState, r: jax.Array) -> loop.TrainState:
  """The state with run r's base learning rate set to 0 (a scalar rate: the one run's)."""
  rates = optim.base_learning_rate(state.opt_state)
  rates = jnp.zeros_like(rates) if rates.ndim == 0 else rates.at[r].set(0.0)
  return state._replace(opt_state=optim.with_learning_rate(state.opt_state, rates))


class OneRun:
  """One run on a device mesh: its streams split over the devices (of every process)."""

  num_runs = 1

  def __init__(self, config: TrainConfig, net: Model, tx: optax.GradientTransformation,
               state: loop.TrainState, corpus: walk.Corpus, mesh, shardings, step: int):
    self.state, self.step = state, step
    self.devices = mesh.size
    self.feed = Feed(corpus, config.steps_per_call, parallel.data_sharding(mesh))
    self._run, self.compile_seconds = _compiled(
        loop.make_run_steps(config, net, tx, config.steps_per_call, corpus.steps_per_epoch,
                            shardings), state, self.feed.abstract())
    self._shardings = shardings
    self._keep = jax.jit(loop.keep_as_best, out_shardings=shardings)
    self._freeze = jax.jit(_frozen, out_shardings=shardings)

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.feed.take(self.step), jnp.int32(n))
    self.step += n
    self.feed.ahead(self.step)  # while the device runs this call
    return parallel.to_host(m.loss)[None, :n], parallel.to_host(m.smooth_loss)[None, :n]

  def state_of(self, r: int) -> loop.TrainState:
    del r
    return self.state

  def learning_rates(self) -> np.ndarray:
    return np.asarray([parallel.to_host(optim.learning_rate(self.state.opt_state))])

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    del r
    next_x = parallel.put(np.asarray(next_x, np.int32), self._shardings.best_x)
    self.state = self._keep(self.state, metric, next_x)

  def freeze(self, r: int) -> None:
    self.state = self._freeze(self.state, jnp.int32(r))


class ManyRuns:
  """R runs in one vmapped program (a leading run axis), split over this process's devices."""

  def __init__(self, config: TrainConfig, net: Model, tx: optax.GradientTransformation,
               states: loop.TrainState, corpus: walk.Corpus, step: int):
    self.num_runs = int(states.step.shape[0])
    self.step = step
    by_run = parallel.run_sharding(self.num_runs, config.num_devices)
    replicated = None
    if by_run is not None:
      states = jax.device_put(states, by_run)
      replicated = NamedSharding(by_run.mesh, P())
    self.feed = Feed(corpus, config.steps_per_call, replicated)  # every run reads the same
    self.devices = 1 if by_run is None else by_run.mesh.size
    self._by_run, self._set_run = by_run, None
    self.state = states
    self._run, self.compile_seconds = _compiled(
        loop.make_run_many(config, net, tx, config.steps_per_call, corpus.steps_per_epoch,
                           by_run), states, self.feed.abstract())

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.feed.take(self.step), jnp.int32(n))
    self.step += n
    self.feed.ahead(self.step)  # while the device runs this call
    return np.asarray(m.loss)[:, :n], np.asarray(m.smooth_loss)[:, :n]

  def state_of(self, r: int) -> loop.TrainState:
    device = jax.local_devices()[0]
    return jax.tree.map(lambda x: jax.device_put(x[r], device), self.state)

  def learning_rates(self) -> np.ndarray:
    return np.asarray(optim.learning_rate(self.state.opt_state))

  def freeze(self, r: int) -> None:
    self.state = _frozen(self.state, r)

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    def set_run(states, r, metric, next_x):
      one = loop.keep_as_best(loop.unstack(states, r), metric, next_x)
      return jax.tree.map(lambda all_runs, x: all_runs.at[r].set(x), states, one)
    if self._set_run is None:
      self._set_run = jax.jit(set_run, out_shardings=self._by_run)
    self.state = self._set_run(self.state, jnp.int32(r), metric, jnp.asarray(next_x, jnp.int32))
