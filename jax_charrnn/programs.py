"""The compiled programs the host loop drives: one run on a device mesh, or many runs at once.

Both do what `Program` says: `advance(n)` runs n updates of every run inside
one jitted call (loop.py's fused loop) and returns their losses; `state_of(r)`
gives run r's state; `learning_rates()`, `keep_best` and `freeze` serve the
metrics, the held-out best copy and a diverged run. The host loop does not know
which one it drives.
"""

from __future__ import annotations

import time
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_charrnn import data, loop, optim, parallel
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


def _compiled(fn, state, inputs, targets):
  """(fn lowered and compiled for these arguments, the seconds it took)."""
  t = time.perf_counter()
  compiled = fn.lower(state, inputs, targets, jnp.int32(1)).compile()
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
               state: loop.TrainState, corpus: data.Corpus, mesh, shardings):
    self.state = state
    self.devices = mesh.size
    self.inputs = parallel.put_streams(corpus.inputs, mesh)
    self.targets = parallel.put_streams(corpus.targets, mesh)
    self._run, self.compile_seconds = _compiled(
        loop.make_run_steps(config, net, tx, config.steps_per_call, shardings), state,
        self.inputs, self.targets)
    self._shardings = shardings
    self._keep = jax.jit(loop.keep_as_best, out_shardings=shardings)
    self._freeze = jax.jit(_frozen, out_shardings=shardings)

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
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
               states: loop.TrainState, corpus: data.Corpus):
    self.num_runs = int(states.step.shape[0])
    by_run = parallel.run_sharding(self.num_runs, config.num_devices)
    self.inputs, self.targets = jnp.asarray(corpus.inputs), jnp.asarray(corpus.targets)
    if by_run is not None:
      states = jax.device_put(states, by_run)
      replicated = NamedSharding(by_run.mesh, P())
      self.inputs = jax.device_put(self.inputs, replicated)
      self.targets = jax.device_put(self.targets, replicated)
    self.devices = 1 if by_run is None else by_run.mesh.size
    self._by_run, self._set_run = by_run, None
    self.state = states
    self._run, self.compile_seconds = _compiled(
        loop.make_run_many(config, net, tx, config.steps_per_call, by_run), states,
        self.inputs, self.targets)

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
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
