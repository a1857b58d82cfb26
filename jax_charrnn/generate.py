"""Text from a model: passages, primes, and the words-of-interest count.

Library functions used by the trainer (samples during training, the best
passage: `Sampler`) and by the sampling CLI (`python -m jax_charrnn.sample`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_charrnn import data, errors, model, pacing, parallel, walk
from jax_charrnn.model import Model, Params


PIECE = 10_000  # characters drawn per jitted call at most (fewer for a large network or many
#                 samples: pacing.chars_per_call): long texts stream, and Ctrl-C is heard


def generate_pieces(net: Model, params: Params, vocab: data.Vocab, carry: Any, x0: int,
                    length: int, key: jax.Array, temperature: float = 1.0, top_p: float = 1.0,
                    prime: str = "", num_samples: int = 1) -> Iterator[list[str]]:
  """`generate`, in pieces of at most PIECE characters: yields, for every sample, its next piece
  (the first piece starts with the prime). A piece is PIECE characters, or fewer for a network
  whose call would take long (pacing.chars_per_call). The text is the same as one call would
  draw for lengths up to a piece; longer texts draw each piece with its own key."""
  missing = vocab.missing(prime)
  if missing:
    what = "bytes" if vocab.unit == "byte" else "characters"
    raise errors.UserError(
        f"The prime {vocab.show(prime)!r} holds {what} the model does not know: "
        f"{', '.join(map(repr, vocab.show_each(''.join(missing))))}. The vocabulary has "
        f"{vocab.size} "
        f"{what}: {''.join(vocab.show_each(''.join(vocab.chars)))!r}.")
  if prime:
    ids = jnp.asarray(vocab.encode(prime))
    if len(prime) > 1:
      carry = net.hidden_states(params, carry, ids[:-1])[1]
    x0 = ids[-1]
  carries = jax.tree.map(lambda c: jnp.broadcast_to(c, (num_samples,) + c.shape), carry)
  xs = jnp.full((num_samples,), x0, jnp.int32)
  done, first = 0, True
  piece = pacing.chars_per_call(params, PIECE, num_samples)
  while done < length:
    n = min(piece, length - done)
    piece_key = key if length <= piece else jax.random.fold_in(key, done)
    ids, carries, xs = model.sample_on(net, params, carries, xs, n, piece_key, temperature, top_p)
    ids = np.asarray(ids)  # [n, samples]
    yield [(prime if first else "") + vocab.decode(ids[:, i]) for i in range(num_samples)]
    done, first = done + n, False


def generate(net: Model, params: Params, vocab: data.Vocab, carry: Any, x0: int, length: int,
             key: jax.Array, temperature: float = 1.0, top_p: float = 1.0,
             prime: str = "", num_samples: int = 1) -> list[str]:
  """Draws `num_samples` passages of `length` characters.

  Args:
    net: the network.
    params: its parameters.
    vocab: its vocabulary.
    carry: the carry to start from, one stream (leaves [H]).
    x0: the id of the character fed in first (ignored when `prime` is given).
    length: characters to draw.
    key: PRNG key.
    temperature, top_p: see `model.sample`.
    prime: text fed through the model first; the passages continue it (and
      start with it).

  Raises:
    UserError: the prime holds characters that are not in the vocabulary.
  """
  passages = [""] * num_samples
  for pieces in generate_pieces(net, params, vocab, carry, x0, length, key, temperature, top_p,
                                prime, num_samples):
    passages = [p + q for p, q in zip(passages, pieces)]
  return passages


@dataclasses.dataclass(frozen=True, eq=False)
class Sampler:
  """Text from a run's training state: its samples while it trains, its best passage."""

  net: Model
  corpus: walk.Corpus
  temperature: float = 1.0

  def text(self, state: Any, step: int, length: int, best: bool = False) -> str:
    """`length` symbols from the state's parameters (a loop.TrainState; best: its best copy),
    going on from where stream 0's text stood, as a person reads them (data.Vocab.show); the
    key is the run's, folded with `step`."""
    key = jax.random.fold_in(jax.random.wrap_key_data(parallel.to_host(state.key)), step)
    if best:
      params, carry = state.best_params, state.best_carry
      x0 = int(parallel.first_row(state.best_x))
    else:
      params, carry, x0 = state.params, state.carry, self.corpus.next_char(step)
    vocab = self.corpus.vocab
    return vocab.show(generate(self.net, parallel.tree_to_host(params), vocab,
                               parallel.tree_first_row(carry), x0, length, key,
                               self.temperature)[0])


@dataclasses.dataclass(frozen=True)
class WordCount:
  """Where a word of interest occurs in a set of passages."""

  passages: int          # how many passages hold it at least once
  occurrences: int       # how often it occurs in all
  examples: tuple[str, ...]  # a few occurrences in their context


def count_words(passages: Sequence[str], words: Sequence[str], case_sensitive: bool = False,
                examples: int = 3, context: int = 20) -> dict[str, WordCount]:
  """Whole-word occurrences of each word (case-insensitively unless case_sensitive).

  "ron" counts in "Ron said" but not in "Ronald" or "wrong".
  """
  out = {}
  for w in words:
    pattern = re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", 0 if case_sensitive else re.IGNORECASE)
    hits = [(p, m) for p in passages for m in pattern.finditer(p)]
    shown = []
    for p, m in hits[:examples]:
      left = p[max(0, m.start() - context):m.start()]
      right = p[m.end():m.end() + context]
      shown.append(" ".join(f"…{left}{m.group(0)}{right}…".split()))
    out[w] = WordCount(sum(1 for p in passages if pattern.search(p)), len(hits), tuple(shown))
  return out
