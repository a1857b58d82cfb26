"""A trained model as its run's checkpoint holds it: what sample, evaluate, export and visualize
read.

  saved = load("runs/goblet_val", "best")
  saved.net, saved.params        the network and the parameters asked for
  saved.carry, saved.x0          where their text stood: stream 0's carry, the next character
  saved.updates                  the parameters are those after this many updates
  saved.describe()               "the best parameters (after 55,526 updates)"

Every command that reads a run loads it here, so all of them fall back the
same way past a damaged newest checkpoint (to the newest intact one, saying
so) and count updates the same way. --which=best is the copy of the best
parameters every checkpoint carries (the parameters before the update whose
loss, or after which the held-out score, was the best); a run with no best
copy yet gives its latest parameters and says so.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np

from jax_charrnn import checkpoint, data, errors, loop, model, tokens, walk
from jax_charrnn.config import TrainConfig
from jax_charrnn.model import Model, Params

WHICH = ("best", "latest")


@dataclasses.dataclass(frozen=True)
class Saved:
  """One set of a run's parameters, with what goes with them."""

  workdir: str
  net: Model
  params: Params
  vocab: data.Vocab
  config: TrainConfig
  carry: Any           # stream 0's carry after the chunk those parameters last read
  x0: int              # the character that came next (where their text goes on)
  updates: int         # the parameters are those after this many updates
  which: str           # "best" or "latest": what these parameters are
  step: int            # the checkpoint's step (updates done when it was saved)
  meta: dict           # the checkpoint's JSON half

  def describe(self) -> str:
    """E.g. "the best parameters (after 273,807 updates)"."""
    return f"the {self.which} parameters (after {self.updates:,} updates)"


def read_config(workdir: str) -> tuple[TrainConfig, dict]:
  """(config, meta) of the newest checkpoint whose meta reads, without its arrays."""
  _, meta = checkpoint.read_meta(workdir)
  if "vocab" not in meta or "config" not in meta:
    raise errors.UserError(f"The checkpoint in {workdir!r} was not written by "
                           "jax_charrnn.train.")
  return TrainConfig.from_dict(meta["config"]), meta


def load(workdir: str, which: str = "best",
         warn: Callable[[str], None] | None = None) -> Saved:
  """The run's best (or latest) parameters from its newest intact checkpoint.

  A float64 run needs 64-bit JAX enabled first (`cli.open_run` does it).

  Args:
    workdir: the run's directory.
    which: "best" or "latest".
    warn: where a warning about a damaged checkpoint passed over goes (the
      entry points pass their console's; default: absl's log).

  Raises:
    UserError: no checkpoint, none intact, or not a jax_charrnn run.
  """
  if which not in WHICH:
    raise ValueError(f"which must be one of {WHICH}; got {which!r}")
  config, newest = read_config(workdir)  # every step of a run has the same config and vocab
  vocab = data.Vocab.from_json(newest["vocab"])
  # Commands read a trained run in full precision (a bfloat16 run's parameters are float32).
  net = loop.build_model(config, vocab.size).full_precision()
  tx = loop.make_optimizer(config, int(newest["steps_per_epoch"]))  # the state's structure
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                        jax.eval_shape(lambda: loop.init_state(config, net, tx)))
  state, meta = checkpoint.restore(workdir, target, warn=warn)
  step = int(meta["step"])
  if which == "best" and int(state.best_step) >= 0:
    return Saved(workdir, net, state.best_params, vocab, config, model.first_stream(state.best_carry),
                 int(state.best_x[0]), int(state.best_step), "best", step, meta)
  return Saved(workdir, net, state.params, vocab, config, model.first_stream(state.carry),
               int(meta.get("next_char", 0)), step, "latest", step, meta)


def _text_path(s: Saved, purpose: str) -> str:
  """Where the run's text is: the absolute path the run recorded ("data_file", what train
  read), else its --data_path as given, from here (a run from before it was recorded, or a
  project moved since).

  Raises:
    UserError: neither exists: both tried paths named, and what to do.
  """
  given, recorded = s.config.data_path, s.meta.get("data_file", "")
  if not given:
    return given
  here_too = os.path.exists(os.path.expanduser(given))
  if recorded and os.path.exists(recorded):  # named as given when that is the same file
    same = here_too and os.path.samefile(os.path.expanduser(given), recorded)
    return given if same else recorded
  if here_too:
    return given
  here = os.path.abspath(os.path.expanduser(given))
  if here == os.path.expanduser(given) or recorded == here:  # an absolute path, or ran here
    where = f"{here!r}, which does not exist now. Put the text back there"
  else:
    where = (f"{given!r}, relative to the directory train ran in: "
             f"{f'{recorded!r} then, ' if recorded else ''}{here!r} from here, and neither "
             "exists now. Run this command from the directory train ran in, or put the text "
             "back")
  raise errors.UserError(
      f"Cannot read the run's text to {purpose}: the run trained on {where}; or pass "
      "--data_path=FILE to read another text instead, as it is.")


def corpus(s: Saved, purpose: str = "find its held-out tail",
           warn: Callable[[str], None] | None = None) -> walk.Corpus:
  """The run's text read again as it read it (its token file), checked against the fingerprint
  it saved; warn: where notes on the token file go (made again if it was deleted).

  Raises:
    UserError: the text cannot be read, or it changed since the run trained on it.
  """
  where = s.config.data_path or data.BUILTIN_CORPUS_NAME
  config = s.config.replace(data_path=_text_path(s, purpose))
  try:
    text = walk.corpus_of(config, warn, warn)
  except errors.UserError as e:
    raise errors.UserError(f"Cannot read the run's text to {purpose}: {e} Pass "
                           "--data_path=FILE to read another text instead, as it is.") from None
  if s.meta.get("text") != text.fingerprint:
    raise errors.UserError(
        f"The text at {where!r} is not the one the run in {s.workdir!r} trained on (it changed "
        "since). Pass --data_path=FILE to use a file as it is.")
  return text


SPLITS = ("val", "test")


def held_out(s: Saved, split: str = "val",
             warn: Callable[[str], None] | None = None) -> tuple[tokens.Symbols, str]:
  """(ids, description) of the run's held-out tail (split "val") or its test part ("test"),
  read again from its text (a view of its token file: read when scored).

  Raises:
    UserError: the run has no such part, its text cannot be read, or the text changed since
      the run trained on it (its tail would be other text).
  """
  flag = "val_fraction" if split == "val" else "test_fraction"
  if not getattr(s.config, flag):
    what = "held-out text" if split == "val" else "test part"
    raise errors.UserError(
        f"The run trained on {s.config.data_path or data.BUILTIN_CORPUS_NAME!r} with {flag} 0: "
        f"it has no {what}. Pass --data_path=FILE to score a text, or train with "
        f"--{flag}=0.1.")
  text = corpus(s, warn=warn)
  ids = text.val_ids if split == "val" else text.test_ids
  what = "held-out tail" if split == "val" else "test part"
  return ids, (f"the {what} of {text.source} ({len(ids):,} of its {text.num_symbols:,} "
               f"{'bytes' if s.config.unit == 'byte' else 'characters'})")


def text_ids(s: Saved, path: str) -> tuple[np.ndarray, dict[str, int], str]:
  """(ids, {unknown symbol: count}, description) of a file read as the run reads text (its
  unit; lowercased if it was, the same line endings); symbols outside its vocabulary get id K."""
  text = data.load_text(path, s.config.lowercase, s.config.raw_newlines, s.config.unit)
  ids, unknown = s.vocab.encode_known(text)
  unit = "bytes" if s.config.unit == "byte" else "characters"
  return ids, unknown, f"{path} ({len(text):,} {unit})"
