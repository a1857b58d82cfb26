"""What a run writes for people from its state: samples while it trains; at the end the best
passage, loss.png and report.md (report.py owns the files; this module fills them).

Host-side, on the writing process, from host copies of the state (no
collective), so every process of a multi-process run can call it safely.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import jax

from jax_charrnn import (data, errors, generate, gradcheck, loop, model, parallel, report, saved,
                         score, visualize)
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
  grads: list = dataclasses.field(default_factory=list)  # hostloop.grad_history


def finish(summaries: Sequence[Summary], corpus: data.Corpus, net: model.Model,
           texts: Texts | None = None, stop: Callable[[], bool] | None = None,
           say: Callable[[str], None] | None = None) -> None:
  """Every run's best_passage.txt, loss.png and report.md (the writing process only).

  Each file is written whole or not at all; a full disk is a paragraph, and a
  rerun of the finished run writes what is missing. stop: read between the
  report's gradient-check calls; once true, the check is skipped and the
  report says so (the only part of the writing that can take minutes); say: where that
  check's progress lines go (gradcheck.progress_lines), None for none.
  """
  try:
    tables: dict[Any, str | None] = {}
    for end in summaries:
      _finish_one(end, corpus, net, texts or Texts(net, corpus, end.config), tables, stop, say)
  except OSError as e:
    raise errors.UserError(
        f"Could not write the run's outputs in {summaries[0].workdir!r} ({e.strerror or e}); the "
        "checkpoints are saved. Free some space and run the same command again: it writes the "
        "missing outputs.") from None


def _finish_one(end: Summary, corpus: data.Corpus, net: model.Model, texts: Texts,
                tables: dict, stop: Callable[[], bool] | None = None,
                say: Callable[[str], None] | None = None) -> None:
  config = end.config
  if end.best_step >= 0:
    report.write_passage(end.workdir, texts.sample(end.state, end.best_step,
                                                   config.passage_length, best=True))
  rows = report.read_metrics(end.workdir)
  report.plot_loss(
      end.workdir, rows, f"{os.path.basename(corpus.source)}\n{net.describe()}; "
      f"{config.optimizer} lr={config.learning_rate:g}; {config.batch_size} stream(s) x "
      f"{config.seq_length} characters an update",
      per_update_chars=(1 if config.loss_reduction == "mean"
                        else config.seq_length * config.batch_size),
      steps_per_epoch=corpus.steps_per_epoch, smoothing=config.smoothing)
  # The gradient check depends on the shapes and the seed, not on the learning rate: a
  # sweep's runs share one table per seed.
  key = (config.seed, config.report_gradcheck_entries)
  if key not in tables:
    tables[key] = gradcheck_table(config, corpus, stop, say)
  page = ""
  if config.visualize_chars and end.diverged_at is None:
    w = visualize.write_page(saved.load(end.workdir, "best"), max_chars=config.visualize_chars)
    page = f"{w.chars:,} characters of {w.what}, {w.bits_per_char:.4f} bits/char"
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
      val_chars=len(corpus.val_ids), page=page, grads=end.grads,
      val_bpc=None if end.val is None else end.val.bits_per_char,
      val_nats=None if end.val is None else end.val.nats_per_char))


def gradcheck_table(config: TrainConfig, corpus: data.Corpus,
                    stop: Callable[[], bool] | None = None,
                    say: Callable[[str], None] | None = None) -> str | None:
  """report.md's gradient-check table (Markdown), None when report_gradcheck_entries is 0,
  report.CHECK_STOPPED when `stop` became true while it ran."""
  if not config.report_gradcheck_entries:
    return None
  if stop is not None and stop():
    return report.CHECK_STOPPED
  try:
    rows = gradcheck.check_text(corpus.text, corpus.vocab, report.check_config(config),
                                entries=config.report_gradcheck_entries, stop=stop,
                                progress=None if say is None else gradcheck.progress_lines(say))
  except KeyboardInterrupt:  # check_text's answer to `stop` (never Python's: Interrupts holds)
    return report.CHECK_STOPPED
  return gradcheck.format_table(rows, 1e-6, markdown=True)


def sweep_summary(workdir: str, config: TrainConfig, corpus: data.Corpus, net: model.Model,
                  pairs: Sequence[tuple[float, int]], summaries: Sequence[Summary],
                  total: int) -> None:
  """A sweep's summary.json, summary.md (its runs ranked) and sweep_loss.png.

  A run that diverged stopped there (its learning rate was set to 0): the table
  says where, its best is the best before it, and its curve ends there.
  """
  results = [dict(name=s.name, learning_rate=lr, seed=seed, final_smooth_loss=s.final_smooth_loss,
                  best_loss=s.best_loss, best_step=s.best_step, diverged_at=s.diverged_at,
                  steps_done=s.steps_done,
                  val_bpc=None if s.val is None else s.val.bits_per_char)
             for (lr, seed), s in zip(pairs, summaries)]
  held_out = bool(config.val_fraction)
  # Ranked by the held-out score where there is one (what generalises), else the smooth loss.
  rank_by = "val_bpc" if held_out else "final_smooth_loss"
  ranked = sorted(results, key=lambda r: (r["diverged_at"] is not None or r[rank_by] is None,
                                          r[rank_by] or 0.0))
  seconds = summaries[0].total_train_seconds
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"config": config.to_dict(), "updates": total, "train_seconds": seconds,
               "runs": ranked}, f, indent=2)
  done = summaries[0].steps_done
  lines = [f"# Sweep: {len(results)} runs, {done:,} of {total:,} updates each", "",
           f"Text: {corpus.source}, {len(corpus.text):,} characters, K = {corpus.vocab.size}; "
           f"{net.describe()}, {config.optimizer}; {seconds:.1f} s of training for all runs "
           "together. Losses as the course reports them "
           f"({'per character' if config.loss_reduction == 'mean' else 'summed over a chunk'}).",
           "", *_sweep_table(ranked, config, held_out), "",
           "![every run's loss per character](sweep_loss.png)", ""]
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  report.plot_runs(
      os.path.join(workdir, "sweep_loss.png"),
      {r["name"]: (os.path.join(workdir, r["name"]), r["diverged_at"]) for r in results},
      title=f"Sweep: {os.path.basename(corpus.source)}, {net.describe()}, {config.optimizer}",
      per_update_chars=(1 if config.loss_reduction == "mean"
                        else config.seq_length * config.batch_size))


def _sweep_table(ranked: Sequence[dict], config: TrainConfig, held_out: bool) -> list[str]:
  best_name = config.best_metric.replace("_", " ")
  lines = [f"| run | learning rate | seed | final smooth loss |"
           f"{' held-out bits/char |' if held_out else ''} best {best_name} | parameters "
           "after |", "|---|---|---|---|---|---|" + ("---|" if held_out else "")]
  for r in ranked:
    diverged = r["diverged_at"] is not None
    final = f"diverged at update {r['diverged_at']:,}" if diverged else \
        f"{r['final_smooth_loss']:.3f}"
    val = "" if not held_out else (
        " – |" if r["val_bpc"] is None or diverged else f" {r['val_bpc']:.4f} |")
    best = ("– | – |" if r["best_step"] < 0 else
            f"{r['best_loss']:.3f}{' (before it diverged)' if diverged else ''} | "
            f"{r['best_step']:,} updates |")
    lines.append(f"| {r['name']} | {r['learning_rate']:g} | {r['seed']} | {final} |{val} {best}")
  return lines
