"""`TrainConfig`: every setting of a training run, frozen, checked, serialisable.

The library never reads flags: `train.py` builds a TrainConfig from them, and
tests build one directly. The defaults are the course's settings.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from jax_charrnn.errors import UserError

OPTIMIZERS = ("adagrad", "adam", "rmsprop")
GRADS = ("manual", "autodiff")
BEST_METRICS = ("smooth_loss", "loss")
INIT_DISTS = ("normal", "uniform")
REDUCTIONS = ("sum", "mean")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one run (the course's by default)."""

  # Data.
  data_path: str = ""             # "" = the built-in corpus
  lowercase: bool = False
  seq_length: int = 25            # T
  batch_size: int = 1             # B streams, each walking its own part of the book
  # Model.
  hidden_size: int = 100          # m
  init_sigma: float = 0.01
  init_dist: str = "normal"
  seed: int = 0
  dtype: str = "float32"          # float64 needs jax_enable_x64 (exactness studies, tests)
  # Optimisation.
  optimizer: str = "adagrad"
  learning_rate: float = 0.1
  clip: float = 5.0               # elementwise, before the optimiser
  loss_reduction: str = "sum"
  grad: str = "manual"            # hand-derived BPTT or jax.grad
  epochs: int = 7
  num_steps: int = 0              # > 0 overrides epochs
  best_metric: str = "smooth_loss"
  smoothing: float = 0.999        # smooth = smoothing * smooth + (1 - smoothing) * loss
  # Host loop and outputs.
  steps_per_call: int = 1000      # updates fused into one jitted call (1: one call per update)
  log_every: int = 100
  sample_every: int = 500         # 0 = never
  report_every: int = 10000       # 0 = never (besides before step 1)
  sample_length: int = 200
  passage_length: int = 1000
  temperature: float = 1.0
  checkpoint_every: int = 10000   # 0 = only at the end (and on interrupts)
  report_gradcheck_entries: int = 200  # finite differences per parameter in report.md; 0 = skip
  # Devices.
  num_devices: int = 0            # 0 = all local devices

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises UserError naming the first setting that is out of range."""
    positive = ("seq_length", "batch_size", "hidden_size", "learning_rate", "clip",
                "steps_per_call", "log_every", "sample_length", "passage_length")
    non_negative = ("init_sigma", "epochs", "num_steps", "sample_every", "report_every",
                    "checkpoint_every", "report_gradcheck_entries", "num_devices", "temperature")
    for name in positive:
      if not getattr(self, name) > 0:
        raise UserError(f"{name} must be positive; got {getattr(self, name)!r}.")
    for name in non_negative:
      if not getattr(self, name) >= 0:
        raise UserError(f"{name} must be zero or positive; got {getattr(self, name)!r}.")
    for name, allowed in (("optimizer", OPTIMIZERS), ("grad", GRADS),
                          ("best_metric", BEST_METRICS), ("init_dist", INIT_DISTS),
                          ("loss_reduction", REDUCTIONS), ("dtype", DTYPES)):
      if getattr(self, name) not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
    if not 0.0 <= self.smoothing < 1.0:
      raise UserError(f"smoothing must lie in [0, 1); got {self.smoothing!r}.")
    if self.epochs == 0 and self.num_steps == 0:
      raise UserError("Set epochs or num_steps to a positive number: there is nothing to train.")

  def total_steps(self, steps_per_epoch: int) -> int:
    """Updates the run makes: num_steps if set, else epochs * steps_per_epoch."""
    return self.num_steps if self.num_steps > 0 else self.epochs * steps_per_epoch

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
    """Builds a config from a dict, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  def replace(self, **changes) -> "TrainConfig":
    return dataclasses.replace(self, **changes)
