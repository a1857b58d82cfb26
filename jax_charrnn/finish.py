"""The end of a run: its best passage, loss.png, the gradient check and report.md; a sweep's
summary and sweep_loss.png.

Host-side, on the writing process, from each run's record and host copies of
its state (no collective), so every process of a multi-process run can call
what it needs safely. Each file is written whole or not at all; a full disk is
a paragraph, and a rerun of the finished run writes what is missing.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from jax_charrnn import errors, gradcheck, model, plots, report, runfiles, saved, visualize, walk
from jax_charrnn.config import TrainConfig
from jax_charrnn.generate import Sampler
from jax_charrnn.record import RunRecord

# The report's check reads at most this many characters (the course's chunk): a chunk of 25
# already runs every path of BPTT through time, and each of the check's ~2,000 perturbed
# losses per parameter reads the whole chunk (a large network's check of a long chunk takes
# minutes: docs/results.md).
REPORT_CHECK_CHARS = 25


def check_config(config: TrainConfig) -> TrainConfig:
  """The network of `config` on the chunk the report's gradient check reads.

  One stream: the gradients of B streams are the sum of theirs, and B copies of a
  large network's activations per perturbed loss would make the check the run's
  slowest part; at most REPORT_CHECK_CHARS characters, for the same reason.
  """
  return config.replace(batch_size=1, seq_length=min(config.seq_length, REPORT_CHECK_CHARS))


def gradcheck_table(config: TrainConfig, corpus: walk.Corpus,
                    stop: Callable[[], bool] | None = None,
                    say: Callable[[str], None] | None = None) -> str | None:
  """report.md's gradient-check table (Markdown), None when report_gradcheck_entries is 0,
  report.CHECK_STOPPED when `stop` became true while it ran; say: where the check's progress
  lines go (gradcheck.progress_lines), None for none."""
  if not config.report_gradcheck_entries:
    return None
  if stop is not None and stop():
    return report.CHECK_STOPPED
  try:
    rows = gradcheck.check_corpus(
        corpus, check_config(config),
        options=gradcheck.Options(entries=config.report_gradcheck_entries), stop=stop,
        progress=None if say is None else gradcheck.progress_lines(say))
  except KeyboardInterrupt:  # check_text's answer to `stop` (never Python's: Interrupts holds)
    return report.CHECK_STOPPED
  return gradcheck.format_table(rows, 1e-6, markdown=True)


def write_outputs(runs: Sequence[tuple[RunRecord, Any]], corpus: walk.Corpus, net: model.Model,
                  sampler: Sampler, stop: Callable[[], bool] | None = None,
                  say: Callable[[str], None] | None = None) -> None:
  """Every run's best_passage.txt, loss.png and report.md (the writing process only).

  Args:
    runs: (record, state) of each run; the state a loop.TrainState.
    corpus, net, sampler: the text, the network and the sampler the runs share.
    stop: read between the report's gradient-check calls; once true, the check is
      skipped and the report says so (the only part of the writing that can take minutes).
    say: where that check's progress lines go, None for none.
  """
  try:
    tables: dict[Any, str | None] = {}
    for record, state in runs:
      _write_one(record, state, corpus, net, sampler, tables, stop, say)
  except OSError as e:
    raise errors.UserError(
        f"Could not write the run's outputs in {runs[0][0].workdir!r} ({e.strerror or e}); the "
        "checkpoints are saved. Free some space and run the same command again: it writes the "
        "missing outputs.") from None


def _write_one(record: RunRecord, state: Any, corpus: walk.Corpus, net: model.Model,
               sampler: Sampler, tables: dict, stop: Callable[[], bool] | None,
               say: Callable[[str], None] | None) -> None:
  config, workdir = record.config, record.workdir
  if record.best_step >= 0:
    runfiles.write_passage(workdir, sampler.text(state, record.best_step, config.passage_length,
                                                 best=True))
  rows = runfiles.read_metrics(workdir)
  plots.plot_loss(
      workdir, rows, f"{os.path.basename(corpus.source)}\n{net.describe()}; "
      f"{config.optimizer} lr={config.learning_rate:g}; {config.batch_size} stream(s) x "
      f"{config.seq_length} characters an update", per_update_chars=config.chars_per_loss,
      steps_per_epoch=corpus.steps_per_epoch, smoothing=config.smoothing)
  # The gradient check depends on the shapes and the seed, not on the learning rate: a
  # sweep's runs share one table per seed.
  key = (config.seed, config.report_gradcheck_entries)
  if key not in tables:
    tables[key] = gradcheck_table(config, corpus, stop, say)
  page = ""
  if config.visualize_chars and record.diverged_at is None:
    w = visualize.write_page(saved.load(workdir, "best"), max_chars=config.visualize_chars)
    page = f"{w.chars:,} characters of {w.what}, {w.bits_per_char:.4f} bits/char"
  report.write_report(record, corpus, report.Ending(
      model=net.describe(), num_params=model.param_count(state.params),
      first_row=rows[0] if rows else None, gradcheck_table=tables[key],
      gradcheck_chars=check_config(config).seq_length, page=page))


def sweep_outputs(root: str, config: TrainConfig, records: Sequence[RunRecord],
                  corpus: walk.Corpus, net: model.Model) -> None:
  """A sweep's summary.json, summary.md (report.py) and sweep_loss.png (plots.py)."""
  report.write_sweep_summary(root, config, records, corpus, net.describe())
  plots.plot_runs(
      os.path.join(root, "sweep_loss.png"),
      {r.name: (r.workdir, r.diverged_at) for r in records},
      title=f"Sweep: {os.path.basename(corpus.source)}, {net.describe()}, {config.optimizer}",
      per_update_chars=config.chars_per_loss)
