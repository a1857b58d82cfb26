"""The one record of a run: what it is, how far it got, its best, its timings, how its
gradients were computed, its held-out score.

A checkpoint is a run's state (the arrays, loop.TrainState) and its record (the
JSON beside them). The host loop keeps the record up to date (`observe` reads
the state's numbers once, at a save and at the end); every checkpoint saves it
as its meta (`to_meta`, with where the run stands in its text); a resumed run
reads back what the next session goes on from (`RunRecord.resumed`: the
held-out score, this session's, is written, not read back); and the Done line,
report.md and a sweep's summary are written from it (report.py). No field is
copied by hand from one record to another.
"""

from __future__ import annotations

import dataclasses
import math
import os

from jax_charrnn import parallel, walk
from jax_charrnn.config import TrainConfig
from jax_charrnn.score import Score


@dataclasses.dataclass
class Timing:
  """Seconds of a run's training: the device calls of every session, and this one's compiling."""

  earlier: float = 0.0      # training in the sessions before this one (from the checkpoint)
  session: float = 0.0      # training in this session (the device calls)
  compile: float = 0.0      # compiling this session's program
  start_step: int = 0       # the update this session started from

  @property
  def total(self) -> float:
    return self.earlier + self.session


@dataclasses.dataclass
class RunRecord:
  """A run as its checkpoint's meta, its report and its last line describe it."""

  name: str                 # how progress lines and a sweep's summary call it
  workdir: str
  config: TrainConfig
  total: int                # updates the run makes (--num_steps, or --epochs' worth)
  step: int = 0             # updates made
  smooth_loss: float = math.nan
  best_loss: float = math.inf
  best_step: int = -1       # the best parameters are those after this many updates (-1: none)
  first_loss: float | None = None   # the run's first chunk loss (the divergence yardstick)
  diverged_at: int | None = None    # the update at which it diverged (a sweep's run goes on)
  held_out: Score | None = None     # this session's latest score of the held-out tail
  # [[s, method], ...]: updates s+1 up to the next entry's s used `method` (--grad).
  gradient_methods: list = dataclasses.field(default_factory=list)
  timing: Timing = dataclasses.field(default_factory=Timing)
  interrupted: bool = False  # Ctrl-C or SIGTERM stopped this session before the total

  def __post_init__(self):
    if not self.gradient_methods:
      self.gradient_methods = [[0, self.config.grad]]

  @classmethod
  def resumed(cls, meta: dict, name: str, workdir: str, config: TrainConfig,
              total: int) -> "RunRecord":
    """The record a checkpoint's meta holds, going on in a session that uses config.grad."""
    step = int(meta["step"])
    # Checkpoints before the record was named for what it holds called the history "grads".
    saved = (meta.get("gradient_methods") or meta.get("grads")
             or [[0, meta.get("config", {}).get("grad", config.grad)]])
    methods = [list(g) for g in saved]
    if methods[-1][1] != config.grad:
      methods.append([step, config.grad])
    return cls(name=name, workdir=workdir, config=config, total=total, step=step,
               smooth_loss=float(meta.get("smooth_loss", math.nan)),
               best_loss=float(meta.get("best_loss", math.inf)),
               best_step=int(meta.get("best_step", -1)), first_loss=meta.get("first_loss"),
               diverged_at=meta.get("diverged_at"), gradient_methods=methods,
               timing=Timing(earlier=float(meta.get("train_seconds", 0.0)), start_step=step))

  def observe(self, state) -> None:
    """Reads how far the run got from its state (a loop.TrainState; host copies, no
    collective: these numbers are replicated on every device)."""
    host = lambda x: parallel.to_host(x).item()
    self.step = int(host(state.step))
    self.smooth_loss = float(host(state.smooth_loss))
    self.best_loss = float(host(state.best_loss))
    self.best_step = int(host(state.best_step))

  def method_spans(self) -> list[tuple[int, int, str]]:
    """(first update, last update, method) of each stretch of updates made with one --grad
    method, in order (the report and the console's note on a resume both read them)."""
    methods = self.gradient_methods or [[0, self.config.grad]]
    spans = []
    for i, (start, method) in enumerate(methods):
      end = methods[i + 1][0] if i + 1 < len(methods) else self.step
      if end > start:
        spans.append((start + 1, end, method))
    return spans

  @property
  def chars_per_second(self) -> float:
    """This session's training speed, characters per second."""
    chars = (self.step - self.timing.start_step) * self.config.seq_length * self.config.batch_size
    return chars / max(self.timing.session, 1e-9)

  @property
  def status(self) -> str:
    if self.diverged_at is not None:
      return f"diverged at update {self.diverged_at}"
    return "interrupted" if self.interrupted else "finished"

  def to_meta(self, corpus: walk.Corpus) -> dict:
    """The checkpoint's JSON half: this record, and where the run stands in its text (enough
    to resume, to sample, and for a person to read)."""
    return {
        "config": self.config.to_dict(), "step": self.step,
        "smooth_loss": self.smooth_loss, "best_loss": self.best_loss,
        "best_step": self.best_step, "first_loss": self.first_loss,
        "diverged_at": self.diverged_at, "gradient_methods": self.gradient_methods,
        "grads": self.gradient_methods,  # the same, under the name checkpoint format 2 read
        "val_bpc": None if self.held_out is None else self.held_out.bits_per_char,
        "train_seconds": self.timing.total,
        "vocab": corpus.vocab.to_json(), "source": corpus.source,
        # where the text is, whatever directory a later command runs in (saved.corpus)
        "data_file": (os.path.abspath(os.path.expanduser(self.config.data_path))
                      if self.config.data_path else ""),
        "num_chars": corpus.num_symbols, "text": corpus.fingerprint,
        "steps_per_epoch": corpus.steps_per_epoch,
        "epoch": self.step // corpus.steps_per_epoch,
        "position": self.step % corpus.steps_per_epoch, "next_char": corpus.next_char(self.step),
    }
