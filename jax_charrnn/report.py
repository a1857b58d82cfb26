"""What a person reads about a run: report.md, the run's last line, a sweep's summary.

  report.md     a one-page summary a student could hand in: data and model, results,
                the gradient check, the loss plot, the text's evolution, the best
                passage, every setting with its meaning
  Done: ...     the last line of a finished run (`done_line`)
  summary.md    a sweep's runs ranked, with summary.json (the same numbers for scripts)

Everything here is written from a run's record (record.RunRecord) and its
text (walk.Corpus), never from a copy of their fields; the run's files and
their formats are runfiles.py's, the figures plots.py's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Sequence

from jax_charrnn import paths, runfiles, walk
from jax_charrnn.config import TrainConfig, settings_rows
from jax_charrnn.record import RunRecord


@dataclasses.dataclass(frozen=True)
class Ending:
  """What the end of a run found beside its record (finish.py makes it)."""

  model: str                   # the network in words, e.g. "1 layer of rnn, H = 100"
  num_params: int
  first_row: dict | None       # the first metrics row (None: none logged)
  gradcheck_table: str | None  # Markdown; None: skipped; CHECK_STOPPED: a signal stopped it
  gradcheck_chars: int = 0     # the characters of the chunk it read
  page: str = ""               # visualize's page of the run, described ("": none written)


def unit_word(config: TrainConfig) -> str:
  """What the run's symbols are called: characters, or bytes."""
  return "bytes" if config.unit == "byte" else "characters"


def per_char(loss: float, config: TrainConfig) -> str:
  """A chunk's loss in nats and bits per character, e.g. "1.639 nats/char, 2.365 bits/char"."""
  nats = loss / config.chars_per_loss
  return f"{nats:.3f} nats/char, {nats / math.log(2):.3f} bits/char"


def gradient_phrase(record: RunRecord) -> str:
  """How the run's gradients were computed, e.g. "manual gradients", or by update range when a
  resume changed --grad ("gradients: manual for updates 1-13, autodiff for 14-25")."""
  spans = record.method_spans()
  if len({m for _, _, m in spans}) <= 1:
    return f"{spans[0][2] if spans else record.gradient_methods[-1][1]} gradients"
  return "gradients: " + ", ".join(f"{m} for updates {a:,}-{b:,}" for a, b, m in spans)


# ---- the run's last line ----

def done_line(record: RunRecord) -> str:
  """The last line of a finished run, e.g. "Done: 55794 updates, smooth loss 40.986, best
  smooth loss 39.301 (the parameters after 55,526 updates); 9.5 s of training (...)."."""
  metric = record.config.best_metric
  if record.best_step < 0:
    best = "no best parameters yet"
  elif metric == "val_bpc":
    best = f"best held-out {record.best_loss:.4f} bits/char"
  else:
    best = f"best {metric.replace('_', ' ')} {record.best_loss:.3f}"
  after = f" (the parameters after {record.best_step:,} updates)" if record.best_step >= 0 else ""
  val = ("" if record.held_out is None
         else f", held-out {record.held_out.bits_per_char:.4f} bits/char")
  return (f"Done: {record.step} updates, smooth loss {record.smooth_loss:.3f}{val}, "
          f"{best}{after}; {record.timing.session:.1f} s of training "
          f"({record.chars_per_second:,.0f} chars/s). Report: "
          f"{os.path.join(record.workdir, runfiles.REPORT)}")


# ---- report.md ----

def _optimiser_line(record: RunRecord) -> str:
  """The optimiser, its learning rate (and schedule) and the clipping, in words."""
  config = record.config
  rate = f"learning rate {config.learning_rate}"
  if config.lr_schedule != "constant":
    rate += f" ({config.lr_schedule} schedule"
    rate += f", floor {config.min_lr_ratio:g} of it)" if config.min_lr_ratio else ")"
  if config.warmup_steps:
    rate += f" after {config.warmup_steps:,} updates of linear warm-up"
  clipped = (f"clipped elementwise to ±{config.clip}" if config.clip_mode == "elementwise"
             else f"clipped to a global norm of {config.clip}")
  return (f"- {config.optimizer} with {rate}, gradients {clipped}; {gradient_phrase(record)}; "
          f"loss reduction: {config.loss_reduction}.")


ONLINE = ("The training loss is *online*: each chunk is scored just before the update that "
          "learns from it, by weights that the updates before it adapted to the text just "
          "before it (the optimiser's early steps are large). It says how well the run follows the "
          "text as it reads it, not how good one fixed set of parameters is; the held-out "
          "score is the fixed parameters' on text they never saw. Early in a run the two can "
          "differ by several bits per character.")


def _held_out(record: RunRecord, corpus: walk.Corpus) -> list[str]:
  val_chars = len(corpus.val_ids)
  if not val_chars:
    return ["- No held-out text (val_fraction = 0): the losses above are on training text."]
  where = (f"the last {100 * record.config.val_fraction:g}% of the text, {val_chars:,} "
           "characters never trained on")
  score = record.held_out
  if score is None:
    return [f"- Held-out text: {where}; not scored yet."]
  return [f"- Held-out text ({where}): **{score.bits_per_char:.4f} bits/char** "
          f"({score.nats_per_char:.4f} nats/char) with the final parameters (`python -m "
          "jax_charrnn.evaluate` scores any text the same way).", f"  {ONLINE}"]


def _best(record: RunRecord) -> str:
  metric = record.config.best_metric
  if record.best_step < 0:
    return f"- Best {metric.replace('_', ' ')}: none yet."
  if metric == "val_bpc":
    return (f"- Best held-out score: **{record.best_loss:.4f} bits/char**, the parameters after "
            f"{record.best_step:,} updates; they wrote the passage below.")
  return (f"- Best {metric.replace('_', ' ')}: **{record.best_loss:.3f}** "
          f"({per_char(record.best_loss, record.config)}), the parameters after "
          f"{record.best_step:,} updates (measured on the next chunk); they wrote the passage "
          "below.")


def _training_time(record: RunRecord) -> str:
  t = record.timing
  speed = f"{record.chars_per_second:,.0f} characters/s"
  if t.session == t.total:
    return f"{t.total:.1f} s ({speed}), plus {t.compile:.1f} s of compilation."
  if not t.session:
    return f"{t.total:.1f} s in all sessions."
  return (f"{t.total:.1f} s in all sessions (the run was resumed); the last one trained "
          f"{t.session:.1f} s ({speed}), plus {t.compile:.1f} s of compilation.")


def _loss_unit(config: TrainConfig) -> str:
  if config.loss_reduction == "mean":
    return "the mean over each chunk's characters"
  return (f"summed over each chunk's {config.seq_length * config.batch_size:,} characters, as "
          "the course reports it")


def _summary_lines(record: RunRecord, corpus: walk.Corpus, end: Ending) -> list[str]:
  """The report's "Data and model" and "Results" sections."""
  config = record.config
  first = end.first_row
  first = "" if first is None else f"{first['smooth_loss']:.3f} at update {first['step']:,}, "
  page = runfiles.PAGE
  return [
      "## Data and model",
      f"- Text: {corpus.source}, {corpus.num_symbols:,} {unit_word(record.config)}, K = "
      f"{corpus.vocab.size} "
      "distinct.",
      f"- Network: {end.model}, {end.num_params:,} parameters; chunks of T = "
      f"{config.seq_length} characters, {config.batch_size} stream(s); "
      f"{corpus.steps_per_epoch:,} updates per epoch.",
      _optimiser_line(record),
      "",
      "## Results",
      f"- Updates: {record.step:,} of {record.total:,} "
      f"({record.step / corpus.steps_per_epoch:.2f} epochs).",
      f"- Smooth loss ({_loss_unit(config)}): {first}**{record.smooth_loss:.3f}** at the "
      f"end ({per_char(record.smooth_loss, config)}).",
      *_held_out(record, corpus),
      _best(record),
      f"- Training time: {_training_time(record)}",
      *([f"- What the network learned, in the browser: [{page}]({page}) ({end.page})."]
        if end.page else []),
  ]


# Ending.gradcheck_table when a signal stopped the check (finish.gradcheck_table).
CHECK_STOPPED = "stopped"


def _gradcheck_lines(config: TrainConfig, end: Ending) -> list[str]:
  table, chars = end.gradcheck_table, end.gradcheck_chars
  if not table:
    return ["Skipped (report_gradcheck_entries = 0)."]
  if table == CHECK_STOPPED:
    return [f"Skipped: Ctrl-C or SIGTERM stopped the run before the check finished. `python -m "
            f"jax_charrnn.gradcheck` with this run's network settings and --seq_length={chars} "
            "--batch_size=1 runs it."]
  return [
      f"Relative errors ||a-b|| / max(1e-6, ||a||+||b||) on the first {chars} characters of the "
      "text (one stream), at freshly initialised parameters of this shape, float64; numerical "
      "gradients by Richardson-extrapolated centred differences, a step chosen per parameter, "
      f"on {config.report_gradcheck_entries} random entries per parameter (`python -m "
      "jax_charrnn.gradcheck --entries=0` checks every entry, on a whole chunk):",
      "",
      table,
  ] + ([] if config.compute_dtype != "bfloat16" else [
      "",
      "The run computes its products in bfloat16 (compute_dtype): this checks the same network "
      "in float64. The mixed-precision gradients are checked against jax.grad of the same "
      "program and float64 finite differences, within bfloat16's bound, in "
      "tests/mixed_precision_test.py."])


def write_report(record: RunRecord, corpus: walk.Corpus, end: Ending) -> str:
  """<workdir>/report.md: model, results, gradient check, loss plot, text evolution, best
  passage, and every setting (the declared settings of the run's config) with its meaning."""
  workdir, config = record.workdir, record.config
  value = lambda v: f"`{v}`" if v != "" else "(empty)"
  settings = [f"| {name} | {value(v)} | {help_text} |"
              for name, v, help_text in settings_rows(config)]
  lines = [
      "# Character-level recurrent network: training report",
      "",
      f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} by jax_charrnn. Status: "
      f"**{record.status}**.",
      "",
      *_summary_lines(record, corpus, end),
      "",
      f"![loss]({runfiles.LOSS_PLOT})",
      "",
      "## Gradient check",
      *_gradcheck_lines(config, end),
      "",
      "## Evolution of the generated text",
      "",
      "```text", runfiles.read_text(workdir, runfiles.SAMPLES), "```",
      "",
      "## Passage from the best parameters",
      "",
      "```text", runfiles.read_text(workdir, runfiles.PASSAGE), "```",
      "",
      "## Settings",
      "",
      "| setting | value | meaning |",
      "|---|---|---|",
      *settings,
      "",
  ]
  path = os.path.join(workdir, runfiles.REPORT)
  paths.write_text(path, "\n".join(lines))
  return path


# ---- a sweep's summary ----

SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"


def _ranked(records: Sequence[RunRecord]) -> list[dict]:
  """Every run's row of the summary, ranked by the held-out score where there is one (what
  generalises), else the smooth loss; diverged runs last."""
  held_out = bool(records[0].config.val_fraction)
  rows = [dict(name=r.name, learning_rate=r.config.learning_rate, seed=r.config.seed,
               final_smooth_loss=r.smooth_loss, best_loss=r.best_loss, best_step=r.best_step,
               diverged_at=r.diverged_at, steps_done=r.step,
               val_bpc=None if r.held_out is None else r.held_out.bits_per_char)
          for r in records]
  rank_by = "val_bpc" if held_out else "final_smooth_loss"
  return sorted(rows, key=lambda r: (r["diverged_at"] is not None or r[rank_by] is None,
                                     r[rank_by] or 0.0))


def write_sweep_summary(root: str, config: TrainConfig, records: Sequence[RunRecord],
                        corpus: walk.Corpus, model: str) -> None:
  """A sweep's summary.json and summary.md (its runs ranked; config: the settings the runs
  share, model: the network in words).

  A run that diverged stopped there (its learning rate was set to 0): the table
  says where, its best is the best before it, and its curve ends there.
  """
  ranked = _ranked(records)
  seconds, done, total = records[0].timing.total, records[0].step, records[0].total
  paths.write_text(os.path.join(root, SUMMARY_JSON), json.dumps(
      {"config": config.to_dict(), "updates": total, "train_seconds": seconds, "runs": ranked},
      indent=2))
  lines = [f"# Sweep: {len(records)} runs, {done:,} of {total:,} updates each", "",
           f"Text: {corpus.source}, {corpus.num_symbols:,} {unit_word(config)}, "
           f"K = {corpus.vocab.size}; "
           f"{model}, {config.optimizer}; {seconds:.1f} s of training for all runs "
           "together. Losses as the course reports them "
           f"({'per character' if config.loss_reduction == 'mean' else 'summed over a chunk'}).",
           "", *_sweep_table(ranked, config, bool(config.val_fraction)), "",
           "![every run's loss per character](sweep_loss.png)", ""]
  paths.write_text(os.path.join(root, SUMMARY_MD), "\n".join(lines))


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
