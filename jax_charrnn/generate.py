"""Text from a model: passages, primes, and the words-of-interest count.

Library functions used by the trainer (samples during training, the best
passage: `Sampler`) and by the sampling CLI (`python -m jax_charrnn.sample`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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
  carry, x0 = primed(net, params, vocab, carry, x0, prime)
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


def primed(net: Model, params: Params, vocab: data.Vocab, carry: Any, x0: int,
           prime: str) -> tuple[Any, Any]:
  """(carry, next input) after feeding `prime` (as they are without one): the prime's
  characters but its last read into the carry, its last the next input.

  Raises:
    UserError: the prime holds characters that are not in the vocabulary.
  """
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
  return carry, x0


def beam_search(net: Model, params: Params, vocab: data.Vocab, carry: Any, x0: int,
                length: int, beams: int, prime: str = "") -> tuple[str, float]:
  """The most probable continuation of `length` characters that beam search finds, and its
  log-probability (nats): (the prime + the continuation, log p(continuation | prime)).

  Each step extends every one of the K beams by every character and keeps the K most probable
  continuations so far (log-probabilities summed over the characters: no length penalty, all
  have `length`). K = 1 is greedy decoding (`sample --temperature=0`); K >= V^(length - 1)
  searches every continuation. Drawn in calls sized by the network's cost (pacing), the beams'
  carries passed from call to call; the back-pointers are followed at the end.
  """
  carry, x0 = primed(net, params, vocab, carry, x0, prime)
  dtype = params.V.dtype
  carries = jax.tree.map(lambda c: jnp.broadcast_to(c, (beams,) + c.shape), carry)
  xs = jnp.full((beams,), x0, jnp.int32)
  # Only the first beam is alive at the start: the others would repeat it.
  scores = jnp.where(jnp.arange(beams) == 0, 0.0, -jnp.inf).astype(dtype)
  piece = pacing.chars_per_call(params, PIECE, beams)
  tokens, parents = [], []
  for done in range(0, length, piece):
    n = min(piece, length - done)
    carries, xs, scores, ids, back = _beam_steps(net, params, carries, xs, scores, n)
    tokens.append(np.asarray(ids))
    parents.append(np.asarray(back))
  tokens, parents = np.concatenate(tokens), np.concatenate(parents)  # [length, K]
  best = int(np.argmax(np.asarray(scores)))
  out, b = [], best
  for t in range(length - 1, -1, -1):
    out.append(int(tokens[t, b]))
    b = int(parents[t, b])
  return prime + vocab.decode(out[::-1]), float(scores[best])


@functools.partial(jax.jit, static_argnames=("net", "n"))
def _beam_steps(net: Model, params: Params, carries: Any, xs: jax.Array, scores: jax.Array,
                n: int):
  """n steps of beam search: (carries, last ids, scores, ids [n, K], back-pointers [n, K])."""
  def step(state, _):
    carries, xs, scores = state
    logits, carries = net.step(params, carries, xs)                  # K streams side by side
    cand = scores[:, None] + jax.nn.log_softmax(logits, axis=-1)      # [K, V]
    top, flat = lax.top_k(cand.reshape(-1), scores.shape[0])
    parent, ids = flat // cand.shape[1], (flat % cand.shape[1]).astype(jnp.int32)
    carries = jax.tree.map(lambda c: c[parent], carries)
    return (carries, ids, top), (ids, parent)

  (carries, xs, scores), (ids, back) = lax.scan(step, (carries, xs, scores), None, length=n)
  return carries, xs, scores, ids, back


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
