"""A run's text as the trainer walks it: its split, its streams, the windows each update reads.

The course walks the training part in consecutive, non-overlapping chunks of T symbols:
chunk c reads symbols c*T .. c*T+T-1 and predicts c*T+1 .. c*T+T. With B streams the
n = floor((N_train - 1) / T) chunks are cut into B equal runs of n_b = floor(n / B) chunks;
stream i walks run i, and update s reads, in every stream, the chunk at position s mod n_b (an
epoch is n_b updates; at position 0 the carry restarts from zero). A chunk's *window* is its
T + 1 symbols: its inputs and, shifted by one, its targets.

`Corpus.windows(step, count)` reads the windows of `count` updates from the text's symbols
(tokens.py: a token file read in blocks, or an array): what one jitted call trains on, and all
the device holds of the text. The held-out part (`--val_fraction`) is the text's tail, the test
part (`--test_fraction`, the literature's three-way split) the tail after it; the vocabulary
comes from all of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from jax_charrnn import data, tokens
from jax_charrnn.errors import UserError


def split_points(num_symbols: int, val_fraction: float,
                 test_fraction: float = 0.0) -> tuple[int, int]:
  """(where the held-out part starts, where the test part starts) in a text of num_symbols:
  the test part is the last test_fraction, the held-out part the val_fraction before it
  (nanoGPT's split without a test part; enwik8's 90 / 5 / 5 with both at 0.05)."""
  test = data.split_point(num_symbols, test_fraction) if test_fraction > 0 else num_symbols
  val = data.split_point(num_symbols, val_fraction + test_fraction) if val_fraction > 0 else test
  return val, test


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A run's text (its tokens), how it is split, and the walk of its training part."""

  tokens: tokens.Tokens
  seq_length: int      # T
  batch_size: int      # B streams
  num_train: int       # symbols before the held-out part
  num_val: int = 0     # held-out symbols (0: none); the test part is what follows them

  def __post_init__(self):
    T, B, n = self.seq_length, self.batch_size, data.num_chunks(self.num_train, self.seq_length)
    if n < 1:
      raise UserError(
          f"The text has {self.num_train} characters, but one training chunk needs "
          f"seq_length + 1 = {T + 1}. Use a longer text or a smaller --seq_length.")
    if n < B:
      raise UserError(
          f"--batch_size={B} is too large for this text: it has {n} chunks of {T} characters, "
          f"so at most {n} streams fit. Use a smaller batch or a longer text.")

  @property
  def vocab(self) -> data.Vocab:
    return self.tokens.vocab

  @property
  def source(self) -> str:
    return self.tokens.source

  @property
  def fingerprint(self) -> str:
    return self.tokens.fingerprint

  @property
  def num_symbols(self) -> int:
    """N, the whole text's symbols (characters or bytes)."""
    return len(self.tokens.symbols)

  @property
  def steps_per_epoch(self) -> int:
    """n_b: the chunks each stream walks, the updates of an epoch."""
    return data.num_chunks(self.num_train, self.seq_length) // self.batch_size

  @property
  def val_ids(self) -> tokens.Symbols:
    """The held-out part's symbols (a view: read when scored)."""
    return self.tokens.symbols[self.num_train:self.num_train + self.num_val]

  @property
  def test_ids(self) -> tokens.Symbols:
    """The test part's symbols (empty without --test_fraction)."""
    return self.tokens.symbols[self.num_train + self.num_val:]

  def _start(self, stream: int, position: int) -> int:
    """Where the chunk at `position` of `stream` starts in the text."""
    return (stream * self.steps_per_epoch + position) * self.seq_length

  def windows(self, step: int, count: int, streams: Sequence[int] | None = None) -> np.ndarray:
    """The windows of updates step .. step + count - 1, int32 [count, T + 1, len(streams)]
    (every stream by default), read a stream's contiguous stretch at a time."""
    T, n = self.seq_length, self.steps_per_epoch
    streams = range(self.batch_size) if streams is None else streams
    out = np.empty((count, T + 1, len(streams)), np.int32)
    for col, i in enumerate(streams):
      j = 0
      while j < count:
        p = (step + j) % n
        run = min(count - j, n - p)  # consecutive chunks up to the epoch's end
        first = self._start(i, p)
        seg = self.tokens.symbols[first:first + run * T + 1].read()
        out[j:j + run, :, col] = np.lib.stride_tricks.sliding_window_view(seg, T + 1)[::T]
        j += run
    return out

  def next_char(self, step: int) -> int:
    """The symbol after the last chunk stream 0 read before `step`: where its text goes on."""
    return int(self.next_chars(step, streams=(0,))[0])

  def next_chars(self, step: int, streams: Sequence[int] | None = None) -> np.ndarray:
    """`next_char` of every stream (or of `streams`), int32 [B]."""
    streams = range(self.batch_size) if streams is None else streams
    if step == 0:
      return np.array([self.tokens.symbols[self._start(i, 0)] for i in streams], np.int32)
    p = (step - 1) % self.steps_per_epoch
    return np.array([self.tokens.symbols[self._start(i, p) + self.seq_length] for i in streams],
                    np.int32)

  @property
  def inputs(self) -> np.ndarray:
    """The whole epoch's inputs, int32 [n_b, T, B] (for small texts: the notebook, tests)."""
    return self.windows(0, self.steps_per_epoch)[:, :-1]

  @property
  def targets(self) -> np.ndarray:
    """The whole epoch's targets, int32 [n_b, T, B]."""
    return self.windows(0, self.steps_per_epoch)[:, 1:]

  def text(self, start: int, stop: int) -> str:
    """Symbols start .. stop - 1 of the text, as symbols (a small stretch)."""
    return self.vocab.decode(self.tokens.symbols[start:stop].read())

  def walked(self, seq_length: int, batch_size: int) -> "Corpus":
    """The same text and split, walked in chunks of another length or by other streams."""
    return dataclasses.replace(self, seq_length=seq_length, batch_size=batch_size)


def split(toks: tokens.Tokens, *, seq_length: int, batch_size: int, val_fraction: float = 0.0,
          test_fraction: float = 0.0) -> Corpus:
  """The text split into training, held-out and test parts, walked as the run walks it.

  Raises:
    UserError: a held-out or test part too short for one prediction; a training part too
      short for one chunk per stream.
  """
  N = len(toks.symbols)
  val, test = split_points(N, val_fraction, test_fraction)
  for flag, fraction, size in (("val_fraction", val_fraction, test - val),
                               ("test_fraction", test_fraction, N - test)):
    if fraction > 0 and size < 2:
      raise UserError(
          f"--{flag}={fraction} holds out {size} character(s) of {N:,}: one prediction "
          f"needs two. Use a larger --{flag} or a longer text.")
  if (val_fraction or test_fraction) and data.num_chunks(val, seq_length) < batch_size:
    held = (f"--val_fraction={val_fraction} and --test_fraction={test_fraction} leave"
            if test_fraction else f"--val_fraction={val_fraction} leaves")
    raise UserError(
        f"{held} {val:,} of the text's {N:,} characters to train on: too few for {batch_size} "
        f"stream(s) of one chunk of seq_length + 1 = {seq_length + 1} characters. Use a smaller "
        "--val_fraction (0.1 is usual).")
  return Corpus(toks, seq_length, batch_size, val, test - val)


def tokens_of(path: str, unit: str = "char", lowercase: bool = False, raw_newlines: bool = False,
              cache_dir: str = "", say: Callable[[str], None] | None = None,
              warn: Callable[[str], None] | None = None) -> tokens.Tokens:
  """The tokens of a text: a file's from its token file (made on its first run; say and warn:
  where the notes on it go), "" the built-in corpus's, in memory."""
  if not path:
    text = data.load_text("", lowercase, raw_newlines, unit)
    return tokens.of_text(text, data.BUILTIN_CORPUS_NAME, unit)
  return tokens.of_file(data.check_file(path), unit, lowercase, raw_newlines, cache_dir, say,
                        warn, name=path)


def load(path: str, *, seq_length: int, batch_size: int, val_fraction: float = 0.0,
         test_fraction: float = 0.0, unit: str = "char", lowercase: bool = False,
         raw_newlines: bool = False, cache_dir: str = "",
         say: Callable[[str], None] | None = None,
         warn: Callable[[str], None] | None = None) -> Corpus:
  """A text (`tokens_of`), split and walked (`split`)."""
  return split(tokens_of(path, unit, lowercase, raw_newlines, cache_dir, say, warn),
               seq_length=seq_length, batch_size=batch_size, val_fraction=val_fraction,
               test_fraction=test_fraction)


def corpus_of(config: Any, say: Callable[[str], None] | None = None,
              warn: Callable[[str], None] | None = None) -> Corpus:
  """A run's text as its settings say (a config.TrainConfig: data_path, unit, lowercase,
  raw_newlines, cache_dir, seq_length, batch_size, val_fraction, test_fraction)."""
  return load(config.data_path, seq_length=config.seq_length, batch_size=config.batch_size,
              val_fraction=config.val_fraction, test_fraction=config.test_fraction,
              unit=config.unit, lowercase=config.lowercase, raw_newlines=config.raw_newlines,
              cache_dir=config.cache_dir, say=say, warn=warn)
