"""How well a model predicts text it has not trained on, in bits per character.

  python -m jax_charrnn.evaluate --workdir=runs/goblet_val              # the run's held-out tail
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --which=latest --data_path=other.txt
  python -m jax_charrnn.evaluate --workdir=runs/goblet_val --json

The score of a text x_1..x_N is the mean cross-entropy of its N - 1 next-character
predictions, the model reading the text once from a zero carry that it passes
from chunk to chunk (1,000 characters a jitted step):

  nats/char = -(1/P) sum_t log p(x_{t+1} | x_1..x_t)    bits/char = nats/char / ln 2
  perplexity = exp(nats/char)

P counts the predictions whose target is in the model's vocabulary: in another
text, a character outside it is counted and named, its prediction is skipped,
and read as an input it is a zero vector. The run's own reading of text
(lowercasing, line endings) applies to the file. The command scores in float64.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn.model import Model, Params

CHUNK = 1000  # characters per step of the scoring scan


@dataclasses.dataclass(frozen=True)
class Score:
  """A text's held-out score."""

  nats_per_char: float
  predictions: int                  # P: the predictions scored
  skipped: int = 0                  # predictions of characters outside the vocabulary
  unknown: dict = dataclasses.field(default_factory=dict)  # {character: count}

  @property
  def bits_per_char(self) -> float:
    return self.nats_per_char / math.log(2)

  @property
  def perplexity(self) -> float:
    return math.exp(self.nats_per_char)

  def to_dict(self) -> dict[str, Any]:
    return {"bits_per_char": self.bits_per_char, "nats_per_char": self.nats_per_char,
            "perplexity": self.perplexity, "predictions": self.predictions,
            "skipped": self.skipped, "unknown": self.unknown}


@functools.partial(jax.jit, static_argnames=("net",))
def _total_nats(net: Model, params: Params, inputs: jax.Array, targets: jax.Array,
                weights: jax.Array) -> jax.Array:
  """sum of weights * -log p(target) over [n, CHUNK] chunks read in order, the carry passed on."""
  dtype = params.V.dtype

  def chunk(carry, xyw):
    x, y, w = xyw
    logits, carry = net.forward(params, carry, x)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
    return carry, jnp.sum(jnp.where(w, nll, jnp.zeros((), dtype)))

  _, sums = lax.scan(chunk, net.zero_carry((), dtype), (inputs, targets, weights))
  return jnp.sum(sums)


def score_ids(net: Model, params: Params, ids: np.ndarray, unknown: dict | None = None) -> Score:
  """The score of a text given as ids (id K and above: outside the vocabulary).

  Args:
    net, params: the model.
    ids: int [N], N >= 2.
    unknown: {character: count} of the characters outside the vocabulary, to report.
  """
  ids = np.asarray(ids, np.int32)
  if ids.size < 2:
    raise ValueError("scoring needs at least two characters (one prediction)")
  inputs, targets = ids[:-1], ids[1:]
  known = targets < net.vocab_size
  n = -(-inputs.size // CHUNK)
  pad = n * CHUNK - inputs.size
  shape = (n, CHUNK)
  x = np.pad(inputs, (0, pad)).reshape(shape)
  y = np.pad(np.where(known, targets, 0), (0, pad)).reshape(shape)
  w = np.pad(known, (0, pad)).reshape(shape)
  total = float(_total_nats(net, params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)))
  scored = int(known.sum())
  return Score(total / max(scored, 1), scored, int((~known).sum()), dict(unknown or {}))


# ---- the command line ----

def define_flags(flag_values=None) -> dict:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import config  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  return {
      "workdir": flags.DEFINE_string("workdir", None, "Directory of a training run.", **kw),
      "which": flags.DEFINE_enum("which", "best", ["best", "latest"], "Score the best "
                                 "parameters or the latest ones.", **kw),
      "data_path": flags.DEFINE_string("data_path", "", "A UTF-8 text to score. Empty: the "
                                       "run's own held-out tail (--val_fraction).", **kw),
      "json": flags.DEFINE_bool("json", False, "Print one JSON object (for scripts).", **kw),
  }


_OWN: dict = {}


def main(argv: Sequence[str]) -> None:
  from jax_charrnn import cli, data, errors, generate, hostloop, trainer  # pylint: disable=g-import-not-at-top
  from jax_charrnn.config import TrainConfig  # pylint: disable=g-import-not-at-top
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
  workdir = cli.require_run(o["workdir"])
  jax.config.update("jax_enable_x64", True)  # the score is summed in float64
  net, params, vocab, _, _, meta = generate.load(workdir, o["which"])
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  config = TrainConfig.from_dict(meta["config"])
  if o["data_path"]:
    text = data.load_text(o["data_path"], config.lowercase, config.raw_newlines)
    ids, unknown = vocab.encode_known(text)
    what = f"{o['data_path']} ({len(text):,} characters)"
  else:
    if not config.val_fraction:
      raise errors.UserError(
          f"The run in {workdir!r} has no held-out split (val_fraction 0). Pass "
          "--data_path=FILE to score a text, or train with --val_fraction=0.1.")
    try:
      corpus = trainer.load_corpus(config)
    except errors.UserError as e:
      raise errors.UserError(f"Cannot read the run's text to find its held-out tail: {e} Pass "
                             "--data_path=FILE to score another copy.") from None
    if meta.get("text") != hostloop.fingerprint(corpus.text):
      raise errors.UserError(
          f"The text at {config.data_path or data.BUILTIN_CORPUS_NAME!r} is not the one the run "
          "trained on (it changed since); its held-out tail would be other text. Pass "
          "--data_path=FILE to score a file as it is.")
    ids, unknown = corpus.val_ids, {}
    what = (f"the held-out tail of {corpus.source} (the last {len(ids):,} of "
            f"{len(corpus.text):,} characters)")
  if len(ids) < 2:
    raise errors.UserError(f"{what} is too short to score: one prediction needs two "
                           "characters.")
  s = score_ids(net, params, ids, unknown)
  if s.predictions == 0:
    raise errors.UserError(
        f"Nothing to score in {what}: every character after the first is outside the model's "
        f"vocabulary ({', '.join(map(repr, sorted(unknown)))}), so no prediction can be scored.")
  if o["json"]:
    sys.stdout.write(json.dumps(dict(s.to_dict(), text=what, which=o["which"],
                                     step=meta.get("step"), workdir=workdir)) + "\n")
    return
  out = [f"Scored {what} with {generate.which_params(o['which'], meta)} of {workdir}:",
         f"  bits/char    {s.bits_per_char:.4f}",
         f"  nats/char    {s.nats_per_char:.4f}",
         f"  perplexity   {s.perplexity:.3f}",
         f"  predictions  {s.predictions:,}"]
  if s.unknown:
    names = ", ".join(f"{ch!r} ({n})" for ch, n in sorted(s.unknown.items(), key=lambda kv: -kv[1]))
    out.append(f"  skipped      {s.skipped:,} predictions of characters the model does not know: "
               f"{names}")
  sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
  from jax_charrnn import cli  # pylint: disable=g-import-not-at-top
  _OWN.update(define_flags())
  cli.run(main)
