"""What a run writes for people from its state: samples while it trains; at the end the best
passage, loss.png and report.md (report.py owns the files; this module fills them).

Host-side, on the writing process, from host copies of the state (no
collective), so every process of a multi-process run can call it safely.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax

from jax_charrnn import data, errors, generate, gradcheck, loop, model, parallel, report, score
from jax_charrnn.config import TrainConfig


class Texts:
  """Samples from a run's state."""

  def __init__(self, net: model.Model, corpus: data.Corpus, config: TrainConfig):
    self.net, self.corpus, self.config = net, corpus, config

  def sample(self, state: loop.TrainState, step: int, length: int, best: bool = False) -> str:
    """`length` characters from the state's parameters (or its best copy), going on from where
    stream 0's text stood; the key is the run's, folded with `step`."""
    key = jax.random.fold_in(jax.random.wrap_key_data(parallel.to_host(state.key)), step)
    if best:
      params, carry = state.best_params, state.best_carry
      x0 = int(parallel.first_row(state.best_x))
    else:
      params, carry, x0 = state.params, state.carry, self.corpus.next_char(step)
    return generate.generate(self.net, parallel.tree_to_host(params), self.corpus.vocab,
                             parallel.tree_first_row(carry), x0, length, key,
                             self.config.temperature)[0]


@dataclasses.dataclass
class Summary:
  """How a run ended: what `trainer.train` returns (one per run for a sweep), and what its
  report states."""

  name: str
  workdir: str
  config: TrainConfig
  state: loop.TrainState
  steps_done: int
  total_steps: int
  final_smooth_loss: float
  best_loss: float
  best_step: int              # the best parameters are those after this many updates (-1: none)
  interrupted: bool
  diverged_at: int | None
  compile_seconds: float
  train_seconds: float        # this session
  total_train_seconds: float  # every session of the run
  chars_per_second: float
  val: score.Score | None = None  # the held-out score at the end (with --val_fraction)


def finish(summaries: Sequence[Summary], corpus: data.Corpus, net: model.Model,
           texts: Texts | None = None) -> None:
  """Every run's best_passage.txt, loss.png and report.md (the writing process only).

  Each file is written whole or not at all; a full disk is a paragraph, and a
  rerun of the finished run writes what is missing.
  """
  try:
    tables: dict[Any, str | None] = {}
    for end in summaries:
      _finish_one(end, corpus, net, texts or Texts(net, corpus, end.config), tables)
  except OSError as e:
    raise errors.UserError(
        f"Could not write the run's outputs in {summaries[0].workdir!r} ({e.strerror or e}); the "
        "checkpoints are saved. Free some space and run the same command again: it writes the "
        "missing outputs.") from None


def _finish_one(end: Summary, corpus: data.Corpus, net: model.Model, texts: Texts,
                tables: dict) -> None:
  config = end.config
  if end.best_step >= 0:
    report.write_passage(end.workdir, texts.sample(end.state, end.best_step,
                                                   config.passage_length, best=True))
  rows = report.read_metrics(end.workdir)
  report.plot_loss(
      end.workdir, rows, f"{os.path.basename(corpus.source)}\n{net.describe()}; "
      f"{config.optimizer} lr={config.learning_rate:g}; B = {config.batch_size} stream(s) of "
      f"T = {config.seq_length}, {config.loss_reduction} loss",
      per_update_chars=(1 if config.loss_reduction == "mean"
                        else config.seq_length * config.batch_size),
      steps_per_epoch=corpus.steps_per_epoch, smoothing=config.smoothing)
  # The gradient check depends on the shapes and the seed, not on the learning rate: a
  # sweep's runs share one table per seed.
  key = (config.seed, config.report_gradcheck_entries)
  if key not in tables:
    tables[key] = gradcheck_table(config, corpus)
  if end.diverged_at is not None:
    status = f"diverged at update {end.diverged_at}"
  else:
    status = "interrupted" if end.interrupted else "finished"
  report.write_report(end.workdir, config, report.RunFacts(
      source=corpus.source, num_chars=len(corpus.text), vocab_size=corpus.vocab.size,
      model=net.describe(), num_params=model.param_count(end.state.params),
      steps_per_epoch=corpus.steps_per_epoch, total_steps=end.total_steps,
      steps_done=end.steps_done, first_logged=rows[0] if rows else None,
      final_smooth_loss=end.final_smooth_loss, best_loss=end.best_loss,
      best_step=end.best_step, best_metric=config.best_metric,
      compile_seconds=end.compile_seconds, train_seconds=end.train_seconds,
      total_train_seconds=end.total_train_seconds,
      chars_per_second=end.chars_per_second, status=status, gradcheck_table=tables[key],
      val_chars=len(corpus.val_ids),
      val_bpc=None if end.val is None else end.val.bits_per_char,
      val_nats=None if end.val is None else end.val.nats_per_char))


def gradcheck_table(config: TrainConfig, corpus: data.Corpus) -> str | None:
  """report.md's gradient-check table (Markdown), or None when report_gradcheck_entries is 0."""
  if not config.report_gradcheck_entries:
    return None
  # One stream: the gradients of B streams are the sum of theirs, and B copies of a large
  # network's activations per perturbed loss would make the check the run's slowest part.
  rows = gradcheck.check_text(corpus.text, corpus.vocab, config.replace(batch_size=1),
                              entries=config.report_gradcheck_entries)
  return gradcheck.format_table(rows, 1e-6, markdown=True)
