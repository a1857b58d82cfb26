"""The compiled programs the host loop drives: one run on a device mesh, or many runs at once.

Both implement `hostloop.Program`: `advance(n)` runs n updates of every run
inside one jitted call (loop.py's fused loop) and returns their losses;
`state_of(r)` gives run r's state; `learning_rates()` and `keep_best` serve
the metrics and the held-out best copy. The host loop does not know which
one it drives.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_charrnn import data, loop, optim, parallel
from jax_charrnn.config import TrainConfig


class OneRun:
  """One run on a device mesh: its streams split over the devices (of every process)."""

  num_runs = 1

  def __init__(self, config: TrainConfig, net, state: loop.TrainState, corpus: data.Corpus,
               mesh, shardings):
    self.state = state
    self.inputs = parallel.put_streams(corpus.inputs, mesh)
    self.targets = parallel.put_streams(corpus.targets, mesh)
    t = time.perf_counter()
    self._run = loop.make_run_steps(config, net, config.steps_per_call, shardings).lower(
        state, self.inputs, self.targets, jnp.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t
    self._shardings = shardings
    self._keep = jax.jit(loop.keep_as_best, out_shardings=shardings)

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
    return parallel.to_host(m.loss)[None, :n], parallel.to_host(m.smooth_loss)[None, :n]

  def state_of(self, r: int) -> loop.TrainState:
    del r
    return self.state

  def learning_rates(self) -> np.ndarray:
    return np.asarray([parallel.to_host(optim.learning_rate(self.state.opt_state))])

  def freeze(self, r: int) -> None:
    raise NotImplementedError("a lone run stops when it diverges (hostloop.Diverged)")

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    del r
    next_x = parallel.put(np.asarray(next_x, np.int32), self._shardings.best_x)
    self.state = self._keep(self.state, metric, next_x)


class ManyRuns:
  """R runs in one vmapped program (a leading run axis), split over this process's devices."""

  def __init__(self, config: TrainConfig, net, states: loop.TrainState, corpus: data.Corpus):
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
    t = time.perf_counter()
    self._run = loop.make_run_many(config, net, config.steps_per_call, by_run).lower(
        states, self.inputs, self.targets, jnp.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t

  def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    self.state, m = self._run(self.state, self.inputs, self.targets, jnp.int32(n))
    return np.asarray(m.loss)[:, :n], np.asarray(m.smooth_loss)[:, :n]

  def state_of(self, r: int) -> loop.TrainState:
    device = jax.local_devices()[0]
    return jax.tree.map(lambda x: jax.device_put(x[r], device), self.state)

  def learning_rates(self) -> np.ndarray:
    return np.asarray(optim.learning_rate(self.state.opt_state))

  def freeze(self, r: int) -> None:
    """Stops run r where it is: its learning rate becomes 0 (the program goes on for the
    others; a diverged run's parameters and best copy stay as they were)."""
    rates = optim.base_learning_rate(self.state.opt_state)
    self.state = self.state._replace(opt_state=optim.with_learning_rate(
        self.state.opt_state, rates.at[r].set(0.0)))

  def keep_best(self, r: int, metric: float, next_x: np.ndarray) -> None:
    def set_run(states, r, metric, next_x):
      one = loop.keep_as_best(loop.unstack(states, r), metric, next_x)
      return jax.tree.map(lambda all_runs, x: all_runs.at[r].set(x), states, one)
    if self._set_run is None:
      self._set_run = jax.jit(set_run, out_shardings=self._by_run)
    self.state = self._set_run(self.state, jnp.int32(r), metric, jnp.asarray(next_x, jnp.int32))
