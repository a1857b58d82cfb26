"""Every setting of a training run, declared once: type, default, help, allowed values, role.

Each field of `TrainConfig` is declared with `setting(...)`: its default, its
help text, its allowed values or bounds, and whether it defines the run
(changing it would not continue the same run). From that one declaration come:

  define_flags / from_flags   the absl flags of the entry points (checked at parse time)
  TrainConfig.__post_init__   the validation (one clear message per bad value)
  differences                 the "workdir holds a run with other settings" check
  settings_rows               the settings table of report.md

Adding a setting is one `setting(...)` line here (and the code that uses it).
The library never reads flags: entry points build a TrainConfig from them, and
tests build one directly. The defaults are the course's settings.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Callable

from jax_charrnn import cells, data, model, optim
from jax_charrnn.cells.ops import INIT_DISTS
from jax_charrnn.errors import UserError

GRADS = ("manual", "autodiff")
BEST_METRICS = ("smooth_loss", "loss", "val_bpc")
DTYPES = ("float32", "float64")
COMPUTE_DTYPES = ("float32", "bfloat16")
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def setting(default: Any, help: str, *, choices: tuple | Callable[[], tuple] | None = None,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, defines_run: bool = False) -> Any:
  """A dataclass field carrying its help text, allowed values and role in its metadata.

  Args:
    default: the default (the course's value).
    help: one or two sentences for --help and the report.
    choices: the allowed values, or a function returning them (e.g. the
      registered cells, which code may extend at run time).
    ge, gt, le, lt: bounds (>=, >, <=, <).
    defines_run: resuming a checkpoint with another value would not continue
      the same run (the workdir check refuses it).
  """
  return dataclasses.field(default=default, metadata=dict(
      help=help, choices=choices, ge=ge, gt=gt, le=le, lt=lt, defines_run=defines_run))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one run (the course's by default)."""

  # ---- data ----
  data_path: str = setting(
      "", "UTF-8 text file to learn from (any file with --unit=byte). Empty (the default) means "
      "the built-in corpus: CPython's documentation text (pydoc_data.topics), no download "
      "needed.")
  unit: str = setting(
      "char", "What a symbol is: char (a UTF-8 text's characters, the course) or byte (the "
      "file's bytes as they are, K <= 256: enwik8, text that is not UTF-8, any file).",
      choices=data.UNITS, defines_run=True)
  lowercase: bool = setting(
      False, "Lowercase the text first (the original notebook did; the handout does not).",
      defines_run=True)
  raw_newlines: bool = setting(
      False, "Keep every \\r of the file as a character. Default: \\r\\n and \\r become "
      "\\n, as Python's text mode (and the course) read them.", defines_run=True)
  val_fraction: float = setting(
      0.0, "Hold out this last fraction of the text (a contiguous tail never trained on) and "
      "score it in bits per character. 0: no held-out split (the course).", ge=0.0, lt=1.0,
      defines_run=True)
  test_fraction: float = setting(
      0.0, "Keep this last fraction of the text as a test part, after the held-out one, never "
      "trained on nor scored in training (`evaluate --split=test` scores it): the literature's "
      "three-way split (enwik8: --val_fraction=0.05 --test_fraction=0.05).", ge=0.0, lt=1.0,
      defines_run=True)
  cache_dir: str = setting(
      "", "Where a data file's token file is kept (made on its first run, checked on every "
      "later one). Empty: $JAX_CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/jax_charrnn, else "
      "~/.cache/jax_charrnn.")
  seq_length: int = setting(25, "T, characters per chunk (one update).", ge=1, le=INT32_MAX,
                            defines_run=True)
  batch_size: int = setting(
      1, "B streams, each walking its own contiguous part of the text (1 = the course).",
      ge=1, le=INT32_MAX, defines_run=True)
  # ---- model ----
  cell: str = setting("rnn", "The recurrent cell: rnn (the course's tanh RNN), lstm or gru "
                      "(PyTorch's nn.LSTM / nn.GRU equations).", choices=cells.names,
                      defines_run=True)
  num_layers: int = setting(1, "Stacked layers of the cell.", ge=1, le=1000, defines_run=True)
  hidden_size: int = setting(100, "H (the course's m): hidden units per layer.", ge=1,
                             le=INT32_MAX, defines_run=True)
  dropout: float = setting(
      0.0, "Dropout probability on the inputs of the layers above the first and on the "
      "read-out's input (char-rnn's placement), in training only; a fresh mask every update.",
      ge=0.0, lt=1.0, defines_run=True)
  dropout_mode: str = setting(
      "per_step", "How --dropout and --input_dropout draw their masks: per_step (a fresh mask "
      "at every character) or locked (variational, AWD-LSTM's: one mask per stream per layer "
      "for the whole chunk).", choices=model.DROPOUT_MODES, defines_run=True)
  input_dropout: float = setting(
      0.0, "Dropout probability on the one-hot input characters (AWD-LSTM's dropouti), in "
      "training only.", ge=0.0, lt=1.0, defines_run=True)
  weight_drop: float = setting(
      0.0, "DropConnect probability on every layer's hidden-to-hidden weights (AWD-LSTM's "
      "weight drop; one mask per layer per update), in training only.", ge=0.0, lt=1.0,
      defines_run=True)
  init_sigma: float = setting(0.01, "Scale of the random initial weights (normal, uniform).",
                              ge=0.0, le=1e3, defines_run=True)
  init_dist: str = setting(
      "normal", "Initial weights: sigma*N(0,1) (normal: the handout), sigma*U[0,1) (uniform: "
      "the original notebook), or U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias "
      "(pytorch: PyTorch's default).", choices=INIT_DISTS, defines_run=True)
  forget_bias: float = setting(0.0, "LSTM only: added to the forget gate's bias at "
                               "initialisation (1 is a common choice).", defines_run=True)
  seed: int = setting(0, "PRNG seed (initial weights, samples).", ge=0, le=INT64_MAX,
                      defines_run=True)
  dtype: str = setting("float32", "Floating-point type of the parameters and the computation "
                       "(float64: slower, for exactness studies).", choices=DTYPES,
                       defines_run=True)
  compute_dtype: str = setting(
      "float32", "The matrix products' operands: float32, or bfloat16 (mixed precision: "
      "bfloat16 operands summed in float32, as torch.autocast does; the parameters, the "
      "optimiser's state, the cells' elementwise arithmetic, the loss and the gradients stay "
      "float32). Held-out scores are computed in full precision.", choices=COMPUTE_DTYPES,
      defines_run=True)
  # ---- optimisation ----
  optimizer: str = setting(
      "adagrad", "adagrad is the course's (G += g^2; theta -= eta g / sqrt(G + 1e-8)); adamw "
      "decays the weight matrices by --weight_decay.", choices=optim.OPTIMIZERS,
      defines_run=True)
  learning_rate: float = setting(0.1, "eta, the optimiser's step size (the course: 0.1 with "
                                 "AdaGrad).", gt=0.0, le=1e300, defines_run=True)
  weight_decay: float = setting(0.0, "adamw's decoupled weight decay (weight matrices only).",
                                ge=0.0, le=1e3, defines_run=True)
  clip: float = setting(5.0, "Clip each gradient entry to [-clip, clip] before the optimiser "
                        "(--clip_mode=global_norm: the largest norm of all gradients together).",
                        gt=0.0, le=1e300, defines_run=True)
  clip_mode: str = setting(
      "elementwise", "elementwise: each gradient entry clipped to [-clip, clip] (the course); "
      "global_norm: every gradient scaled by min(1, clip / ||g||), ||g|| the norm of all of "
      "them together (optax.clip_by_global_norm).", choices=optim.CLIP_MODES, defines_run=True)
  lr_schedule: str = setting(
      "constant", "The learning rate over the run's updates (after any --warmup_steps): "
      "constant (the course), cosine or linear decay from --learning_rate to --min_lr_ratio "
      "times it at the last update, or step (char-rnn's: times --lr_decay every "
      "--lr_decay_every updates once --lr_decay_after are done). The decay spans --num_steps "
      "(or --epochs): resume with the same total to continue it exactly.",
      choices=optim.SCHEDULES, defines_run=True)
  warmup_steps: int = setting(0, "Updates of linear warm-up from 0 to --learning_rate before "
                              "the schedule (0: none).", ge=0, le=INT32_MAX, defines_run=True)
  min_lr_ratio: float = setting(
      0.0, "The floor of the decay (cosine, linear, step) as a fraction of --learning_rate.",
      ge=0.0, le=1.0, defines_run=True)
  lr_decay: float = setting(0.97, "lr_schedule step: the factor of each decay (char-rnn's "
                            "0.97).", gt=0.0, le=1.0, defines_run=True)
  lr_decay_every: int = setting(0, "lr_schedule step: updates between decays (0: one epoch, "
                                "as char-rnn).", ge=0, le=INT32_MAX, defines_run=True)
  lr_decay_after: int = setting(0, "lr_schedule step: updates (after the warm-up) before the "
                                "decays begin.", ge=0, le=INT32_MAX, defines_run=True)
  loss_reduction: str = setting("sum", "Loss of a chunk: the sum over its characters (the "
                                "course) or the mean.", choices=model.REDUCTIONS, defines_run=True)
  grad: str = setting("manual", "Hand-derived BPTT (manual) or jax.grad (autodiff): the same "
                      "numbers.", choices=GRADS)
  epochs: int = setting(7, "Passes over the text (ignored when --num_steps is set).", ge=0,
                        le=INT32_MAX)
  num_steps: int = setting(0, "Total updates; 0 means --epochs decides.", ge=0, le=INT32_MAX)
  best_metric: str = setting(
      "smooth_loss", "What picks the best parameters: the smooth loss, one chunk's loss (the "
      "notebook), or the held-out bits per character (val_bpc, checked every --eval_every "
      "updates; needs --val_fraction).", choices=BEST_METRICS, defines_run=True)
  smoothing: float = setting(0.999, "smooth = smoothing * smooth + (1 - smoothing) * loss.",
                             ge=0.0, lt=1.0, defines_run=True)
  max_loss_ratio: float = setting(
      3.0, "Stop, naming the last good checkpoint, when the smooth loss exceeds this multiple "
      "of the run's first loss (a loss that explodes without becoming NaN). The smooth loss, "
      "not each chunk's: a spike of a few updates (the notebook's uniform initialisation "
      "reaches 3.8x at update 3, then learns) passes; an explosion stops within tens of "
      "updates. NaN or infinity always stops. 0: only NaN and infinity stop a run.",
      ge=0.0, le=1e12)
  # ---- the host loop and its outputs ----
  steps_per_call: int = setting(
      1000, "Updates run inside one jitted call; the host wakes up earlier when logging, "
      "sampling or checkpointing is due. 1 = one call per update.", ge=1, le=INT32_MAX)
  log_every: int = setting(100, "Print progress and record metrics every N updates.", ge=1,
                           le=INT32_MAX)
  eval_every: int = setting(1000, "Score the held-out text every N updates (and at the end; "
                            "0: only at the end). Needs --val_fraction.", ge=0, le=INT32_MAX)
  eval_streams: int = setting(
      1, "Score the held-out text as this many contiguous segments side by side, for long "
      "held-out parts (each segment after the first reads the 1,000 characters before it as "
      "context, unscored). 1: one stream from the start, the exact score.", ge=1, le=1 << 16)
  sample_every: int = setting(500, "Print a sample every N updates (0: never).", ge=0,
                              le=INT32_MAX)
  report_every: int = setting(10000, "Append a sample to samples.txt every N updates (0: only "
                              "before the first update).", ge=0, le=INT32_MAX)
  sample_length: int = setting(200, "Characters per sample.", ge=1, le=100_000)
  passage_length: int = setting(1000, "Characters in best_passage.txt.", ge=1, le=100_000)
  temperature: float = setting(1.0, "Sampling temperature of the samples (0: the most likely "
                               "character).", ge=0.0, le=1e6)
  checkpoint_every: int = setting(10000, "Checkpoint every N updates (0: only at the end and "
                                  "on interrupts).", ge=0, le=INT32_MAX)
  report_gradcheck_entries: int = setting(
      200, "Finite-difference entries per parameter in report.md's gradient check (0: skip "
      "it).", ge=0, le=INT32_MAX)
  tensorboard: bool = setting(
      False, "Also write the curves (training, smooth and held-out loss, learning rate, "
      "characters/s) and the samples as TensorBoard event files in <workdir>/tensorboard "
      "(needs the tensorboard extra: pip install -e '.[tensorboard]'); watch with "
      "`tensorboard --logdir=runs`.")
  visualize_chars: int = setting(
      0, "At the end, write visualize.html (what the network learned: each character's "
      "surprisal, hidden units, gates; see `python -m jax_charrnn.visualize`) over this many "
      "characters of the held-out tail (or of the text's end), linked from report.md. 0: no "
      "page.", ge=0, le=1_000_000)
  # ---- devices ----
  num_devices: int = setting(
      0, "Devices to split the --batch_size streams over (data parallel; 0: all devices of "
      "all processes). The batch must be a multiple of it.", ge=0, le=INT32_MAX)

  def __post_init__(self):
    for f in dataclasses.fields(self):
      message = check(f, getattr(self, f.name))
      if message:
        raise UserError(message)
    if self.epochs == 0 and self.num_steps == 0:
      raise UserError("Set epochs or num_steps to a positive number: there is nothing to train.")
    if self.grad == "manual" and cells.get(self.cell).backward is None:
      raise UserError(f"The {self.cell!r} cell has no hand-derived BPTT: use grad=autodiff "
                      "(jax.grad) with it.")
    if self.visualize_chars == 1:
      raise UserError("visualize_chars must be 0 (no page) or from 2 to 1,000,000 (one "
                      "prediction needs two characters); got 1.")
    if self.best_metric == "val_bpc" and not self.val_fraction:
      raise UserError("best_metric val_bpc needs a held-out split: set val_fraction (e.g. 0.1).")
    self._check_schedule()
    self._check_regularisers()
    self._check_text()
    if self.compute_dtype == "bfloat16" and self.dtype != "float32":
      raise UserError(f"compute_dtype=bfloat16 is mixed precision over float32 parameters; "
                      f"dtype is {self.dtype}. Set dtype=float32 or leave compute_dtype out.")
    if self.weight_decay and self.optimizer != "adamw":
      raise UserError(f"weight_decay applies to the adamw optimizer only (optimizer is "
                      f"{self.optimizer!r}); set weight_decay=0 or optimizer=adamw.")

  def check_given(self, given: set[str]) -> None:
    """Checks of what a person set (on the command line or in a flag file), beyond the values:
    a setting that would be ignored silently is an error."""
    if "eval_every" in given and not self.val_fraction:
      raise UserError(f"--eval_every={self.eval_every} needs a held-out split to score, and "
                      "val_fraction is 0: set --val_fraction (e.g. 0.1), or drop --eval_every.")

  def _check_schedule(self):
    """The schedule's settings that its kind would ignore are refused, not ignored."""
    if self.min_lr_ratio and self.lr_schedule == "constant":
      raise UserError("min_lr_ratio is the floor of a decaying learning rate, and lr_schedule "
                      "is constant; set lr_schedule=cosine, linear or step, or min_lr_ratio=0.")
    step_only = [f.name for f in dataclasses.fields(self)
                 if f.name in ("lr_decay", "lr_decay_every", "lr_decay_after")
                 and getattr(self, f.name) != f.default]
    if step_only and self.lr_schedule != "step":
      raise UserError(f"{', '.join(step_only)} belong{'s' if len(step_only) == 1 else ''} to "
                      f"lr_schedule=step (lr_schedule is {self.lr_schedule!r}); set "
                      f"lr_schedule=step or leave {'it' if len(step_only) == 1 else 'them'} out.")

  def _check_text(self):
    """Reading settings that cannot hold together."""
    if self.unit == "byte" and self.lowercase:
      raise UserError("lowercase applies to characters, and unit is byte (the file's bytes as "
                      "they are); set unit=char or leave lowercase out.")
    if self.val_fraction + self.test_fraction >= 1.0:
      raise UserError(f"val_fraction ({self.val_fraction}) and test_fraction "
                      f"({self.test_fraction}) together leave nothing to train on; keep their "
                      "sum below 1 (0.05 each is enwik8's split).")

  def _check_regularisers(self):
    """Regularisers' settings that would change nothing are refused, not ignored."""
    if self.dropout_mode != "per_step" and not (self.dropout or self.input_dropout):
      raise UserError(f"dropout_mode {self.dropout_mode} applies to dropout and input_dropout, "
                      "and both are 0; set one of them (e.g. dropout=0.25) or leave "
                      "dropout_mode out.")
    if self.weight_drop and cells.get(self.cell).recurrent is None:
      raise UserError(f"weight_drop needs a cell that names its hidden-to-hidden weights; the "
                      f"{self.cell!r} cell does not (rnn, lstm and gru do).")

  def total_steps(self, steps_per_epoch: int) -> int:
    """Updates the run makes: num_steps if set, else epochs * steps_per_epoch.

    Raises UserError when --warmup_steps would take the whole run (the learning rate would
    never reach --learning_rate, and a decay would never start)."""
    total = run_length(self.num_steps, self.epochs, steps_per_epoch)
    if self.warmup_steps and self.warmup_steps >= total:
      raise UserError(f"warmup_steps={self.warmup_steps:,} is not shorter than the run's "
                      f"{total:,} updates: the learning rate would never reach "
                      f"{self.learning_rate}. Set warmup_steps below the total (a few percent "
                      "of it is usual) or train longer.")
    return total

  @property
  def chars_per_loss(self) -> int:
    """What divides a chunk's loss to give it per character: T x B for the course's sum over
    the chunk, 1 for a mean."""
    return 1 if self.loss_reduction == "mean" else self.seq_length * self.batch_size

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
    """Builds a config from a dict, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  def replace(self, **changes) -> "TrainConfig":
    return dataclasses.replace(self, **changes)


# The headings of --help: each names the first setting of its section, and a setting belongs to
# the section of the last heading before it (in the order the flags are defined).
SECTIONS = {
    "data_path": "The text",
    "cell": "The network",
    "optimizer": "Optimisation (the course: AdaGrad 0.1, gradients clipped to 5, sum loss)",
    "epochs": "How long, and what counts as best",
    "steps_per_call": "Progress, samples, checkpoints and reports",
    "num_devices": "Devices and processes",
    "workdir": "This command",
    "learning_rates": "This command",   # the sweep's own
    "chunk_index": "This command",      # the gradient check's own
}


# ---- what the declarations generate ----

def _choices(f: dataclasses.Field) -> tuple | None:
  choices = f.metadata.get("choices")
  return choices() if callable(choices) else choices


def check(f: dataclasses.Field, value: Any) -> str | None:
  """The message for a value the declaration of `f` does not allow (None if it is allowed)."""
  m, name = f.metadata, f.name
  choices = _choices(f)
  if choices is not None and value not in choices:
    return f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}."
  if isinstance(value, float) and value != value:  # NaN passes no bound
    if any(m.get(k) is not None for k in ("ge", "gt", "le", "lt")):
      return f"{name} must be a number; got nan."
  for key, ok, words in (("ge", lambda v, b: v >= b, "at least"),
                         ("gt", lambda v, b: v > b, "greater than"),
                         ("le", lambda v, b: v <= b, "at most"),
                         ("lt", lambda v, b: v < b, "less than")):
    bound = m.get(key)
    if bound is not None and not ok(value, bound):
      if key == "gt" and bound == 0:
        return f"{name} must be positive; got {value!r}."
      return f"{name} must be {words} {bound:,}; got {value!r}." if isinstance(bound, int) \
          else f"{name} must be {words} {bound}; got {value!r}."
  return None


def run_length(num_steps: int, epochs: int, steps_per_epoch: int) -> int:
  """A run's updates: num_steps if set, else epochs * steps_per_epoch (also of a saved config)."""
  return num_steps if num_steps > 0 else epochs * steps_per_epoch


def declared(cls=TrainConfig) -> tuple[dataclasses.Field, ...]:
  return dataclasses.fields(cls)


def run_defining(cls=TrainConfig) -> tuple[str, ...]:
  """The settings that fix what a checkpoint means."""
  return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("defines_run"))


def differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
  """The run-defining settings whose saved value differs from config's, as phrases."""
  defaults = {f.name: f.default for f in dataclasses.fields(config)}
  out = []
  for name in run_defining(type(config)):
    old = saved.get(name, defaults[name])  # a setting newer than the checkpoint had its default
    if old != getattr(config, name):
      out.append(f"{name} ({old!r} saved, {getattr(config, name)!r} now)")
  return out


def settings_rows(config) -> list[tuple[str, Any, str]]:
  """(name, value, help) for every declared setting, for report.md."""
  return [(f.name, getattr(config, f.name), f.metadata.get("help", ""))
          for f in dataclasses.fields(config)]


def flag_module(name: str | None) -> str | None:
  """The name absl files a module's flags under (a script's own: its path), for --help."""
  return sys.argv[0] if name == "__main__" else name


def define_flags(cls, flag_values=None, module_name: str | None = None,
                 names: tuple[str, ...] | None = None) -> dict[str, Any]:
  """One absl flag per declared field of `cls`, checked at parse time; returns the holders.

  Args:
    cls: a dataclass whose fields were declared with `setting`.
    flag_values: the FlagValues to define them in (absl's global FLAGS by default).
    module_name: the module --help lists them under (the entry point's).
    names: only these fields (default: all).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  module_name = flag_module(module_name)
  hints = typing.get_type_hints(cls)
  holders = {}
  for f in dataclasses.fields(cls):
    if names is not None and f.name not in names:
      continue
    kind, m = hints[f.name], f.metadata
    choices = _choices(f)
    help_text = m.get("help", "")
    kw = dict(flag_values=flag_values, module_name=module_name)
    if kind is bool:
      holders[f.name] = flags.DEFINE_bool(f.name, f.default, help_text, **kw)
    elif kind is int:
      holders[f.name] = flags.DEFINE_integer(f.name, f.default, help_text, **kw)
    elif kind is float:
      holders[f.name] = flags.DEFINE_float(f.name, f.default, help_text, **kw)
    elif choices is not None and not callable(m.get("choices")):
      holders[f.name] = flags.DEFINE_enum(f.name, f.default, list(choices), help_text, **kw)
    else:
      if choices is not None:
        help_text += f" One of: {', '.join(choices)}."
      holders[f.name] = flags.DEFINE_string(f.name, f.default, help_text, **kw)

    def validate(value, f=f):
      message = check(f, value)
      if message:
        raise flags.ValidationError(message)
      return True

    flags.register_validator(f.name, validate, flag_values=flag_values)
  return holders


def from_flags(cls, flag_values=None):
  """An instance of `cls` from the parsed flags that `define_flags(cls)` defined."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  obj = cls(**{f.name: flag_values[f.name].value for f in dataclasses.fields(cls)})
  check_given = getattr(obj, "check_given", None)
  if check_given is not None:
    check_given({f.name for f in dataclasses.fields(cls) if flag_values[f.name].present})
  return obj
