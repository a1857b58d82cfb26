"""Text in, integer ids out: the vocabulary, text loading and the course's chunking.

NumPy only: nothing here touches JAX, so data preparation never allocates on
an accelerator and is easy to test.

The course walks the book in consecutive, non-overlapping chunks of
`seq_length` characters: chunk e reads inputs ids[e*T : e*T+T] and predicts
targets ids[e*T+1 : e*T+T+1] (the same characters shifted by one). A text of
N characters therefore gives floor((N - 1) / T) chunks; the characters after
the last full chunk are not used in that epoch (the course does the same).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from typing import Any, Sequence

import numpy as np

from jax_charrnn.errors import UserError

BUILTIN_CORPUS_NAME = "built-in corpus (CPython's pydoc_data.topics)"


@dataclasses.dataclass(frozen=True)
class Vocab:
  """The characters of a text, with stable integer ids.

  Ids follow `sorted(set(text))`, so the same text always gives the same ids
  (a bare `set` would not, and restored weights would read the wrong columns).
  """

  chars: tuple[str, ...]

  def __post_init__(self):
    if list(self.chars) != sorted(set(self.chars)):
      raise ValueError("Vocab.chars must be sorted and free of repeats.")
    object.__setattr__(self, "_index", {ch: i for i, ch in enumerate(self.chars)})

  @classmethod
  def from_text(cls, text: str) -> "Vocab":
    if not text:
      raise ValueError("Cannot build a vocabulary from an empty text.")
    return cls(tuple(sorted(set(text))))

  @property
  def size(self) -> int:
    """K, the number of distinct characters."""
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """Characters -> int32 ids [len(text)]; an unknown character is a ValueError."""
    index = self._index
    try:
      return np.fromiter((index[ch] for ch in text), dtype=np.int32, count=len(text))
    except KeyError:
      pos = next(i for i, ch in enumerate(text) if ch not in index)
      raise ValueError(
          f"Character {text[pos]!r} at position {pos} is not in the vocabulary "
          f"({self.size} characters); use only characters of the training text."
      ) from None

  def encode_known(self, text: str) -> tuple[np.ndarray, dict[str, int]]:
    """Like `encode`, but a character outside the vocabulary becomes id K (the model reads
    it as a zero vector); returns (ids, {unknown character: how often})."""
    index, unknown, K = self._index, {}, self.size
    ids = np.empty(len(text), np.int32)
    for i, ch in enumerate(text):
      j = index.get(ch)
      if j is None:
        unknown[ch] = unknown.get(ch, 0) + 1
        j = K
      ids[i] = j
    return ids, unknown

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Ids -> text. Ids outside [0, K) are a ValueError."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.size):
      raise ValueError(f"ids must lie in [0, {self.size}); got {ids.min()}..{ids.max()}.")
    chars = self.chars
    return "".join(chars[i] for i in ids.tolist())

  def missing(self, text: str) -> list[str]:
    """The distinct characters of `text` that are not in the vocabulary, in order seen."""
    seen = dict.fromkeys(ch for ch in text if ch not in self._index)
    return list(seen)

  def to_json(self) -> str:
    return json.dumps({"chars": "".join(self.chars)}, ensure_ascii=False)

  @classmethod
  def from_json(cls, s: str) -> "Vocab":
    return cls(tuple(json.loads(s)["chars"]))


def builtin_corpus() -> str:
  """The English documentation text that CPython ships (about 465k characters).

  It needs no network and no file in the repository. Its exact content
  depends on the Python version (the topics are regenerated for each release).
  """
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top

  return "".join(topics.topics[k] for k in sorted(topics.topics))


def universal_newlines(text: str) -> str:
  """\r\n and a lone \r become \n, as Python's text mode reads a file (and the course did)."""
  return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text(path: str, lowercase: bool = False, raw_newlines: bool = False) -> str:
  """Reads a UTF-8 text file; "" means the built-in corpus.

  Line endings are read as Python's text mode reads them (\r\n and \r become
  \n), unless raw_newlines keeps every \r as a character of its own. The
  course's book (CRLF line endings) is then 1,107,542 characters, K = 80.

  Raises:
    UserError: the file is missing, is a directory, cannot be read, is empty,
      or is not UTF-8 (the message names the file and the first bad byte offset).
  """
  if not path:
    text = builtin_corpus()
  else:
    path = os.path.expanduser(path)
    if os.path.isdir(path):
      raise UserError(f"The data path {path!r} is a directory; pass a UTF-8 text file.")
    if not os.path.exists(path):
      parent = os.path.dirname(os.path.abspath(path))
      if os.path.isdir(parent) and not os.access(parent, os.R_OK | os.X_OK):
        raise UserError(f"The data file {path!r} cannot be read: its directory {parent!r} is "
                        "not readable (permission denied).")
      raise UserError(
          f"The data file {path!r} does not exist. Pass the path of a UTF-8 text "
          "file with --data_path, or leave it empty to use the built-in corpus.")
    try:
      with open(path, "rb") as f:
        raw = f.read()
    except OSError as e:
      raise UserError(f"Could not read the data file {path!r}: {e.strerror}.") from None
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise UserError(
          f"The data file {path!r} is not UTF-8 text: byte offset {e.start} "
          f"(0x{raw[e.start]:02x}) cannot be decoded ({e.reason}). Convert it, e.g. "
          "with `iconv -f latin1 -t utf-8`.") from None
    # A UTF-8 byte-order mark is not part of the text.
    text = text.removeprefix("\ufeff")
    if not text:
      raise UserError(f"The data file {path!r} is empty; it needs some text to learn from.")
  if not raw_newlines:
    text = universal_newlines(text)
  return text.lower() if lowercase else text


def num_chunks(num_ids: int, seq_length: int) -> int:
  """How many full (inputs, targets) chunks the course's walk gets from the text."""
  return (num_ids - 1) // seq_length


def chunks(ids: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray]:
  """The course's consecutive, non-overlapping training pairs.

  Args:
    ids: int [N], the encoded text.
    seq_length: T, characters per chunk.

  Returns:
    (inputs, targets), both int32 [n, T] with n = floor((N - 1) / T):
    inputs[e] = ids[e*T : e*T+T] and targets[e] = ids[e*T+1 : e*T+T+1].
    The last N - 1 - n*T characters (fewer than T) are not used.

  Raises:
    UserError: the text is shorter than seq_length + 1 characters.
  """
  ids = np.asarray(ids, dtype=np.int32)
  if seq_length < 1:
    raise UserError(f"seq_length must be at least 1; got {seq_length}.")
  n = num_chunks(len(ids), seq_length)
  if n < 1:
    raise UserError(
        f"The text has {len(ids)} characters, but one training chunk needs "
        f"seq_length + 1 = {seq_length + 1}. Use a longer text or a smaller --seq_length.")
  inputs = ids[: n * seq_length].reshape(n, seq_length)
  targets = ids[1 : n * seq_length + 1].reshape(n, seq_length)
  return inputs, targets


def stream_chunks(ids: np.ndarray, seq_length: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits the book into `batch_size` contiguous streams, chunked as the course does.

  The course's n = floor((N - 1) / T) chunks are cut into B equal runs of
  n_b = floor(n / B) consecutive chunks; stream i reads run i. With B = 1 this
  is exactly `chunks`. Up to B - 1 trailing chunks are not used.

  Returns:
    (inputs, targets), both int32 [n_b, T, B]: the time-major chunk for step s
    is inputs[s] (one column per stream).

  Raises:
    UserError: the text has fewer than B chunks.
  """
  inputs, targets = chunks(ids, seq_length)
  n = inputs.shape[0]
  if batch_size < 1:
    raise UserError(f"batch_size must be at least 1; got {batch_size}.")
  n_b = n // batch_size
  if n_b < 1:
    raise UserError(
        f"--batch_size={batch_size} is too large for this text: it has {n} chunks of "
        f"{seq_length} characters, so at most {n} streams fit. Use a smaller batch "
        "or a longer text.")

  def to_streams(a):
    return np.ascontiguousarray(a[: n_b * batch_size].reshape(batch_size, n_b, seq_length).transpose(1, 2, 0))

  return to_streams(inputs), to_streams(targets)


def split_point(num_chars: int, val_fraction: float) -> int:
  """Where the held-out tail starts: the first int(N * (1 - val_fraction)) characters train.

  nanoGPT's split (train = data[:int(n * 0.9)]): with val_fraction = 0.1,
  tiny-shakespeare's 1,115,394 characters hold out the last 111,540.
  """
  return int(num_chars * round(1.0 - val_fraction, 12))


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A run's text, its vocabulary, the chunks of one epoch, and the held-out tail."""

  text: str             # the whole text (the vocabulary comes from all of it)
  source: str           # the file, or the built-in corpus's name
  vocab: Vocab
  inputs: np.ndarray    # int32 [n, T, B], from the training part only
  targets: np.ndarray   # int32 [n, T, B]
  val_ids: np.ndarray   # int32 [N_val], the held-out tail (empty without one)
  num_train_chars: int  # characters before the held-out tail

  @property
  def steps_per_epoch(self) -> int:
    return self.inputs.shape[0]

  def next_char(self, step: int) -> int:
    """The character after the last chunk stream 0 read before `step`: where its text goes on."""
    if step == 0:
      return int(self.inputs[0, 0, 0])
    return int(self.targets[(step - 1) % self.steps_per_epoch, -1, 0])

  def next_chars(self, step: int) -> np.ndarray:
    """`next_char` of every stream, int32 [B]."""
    if step == 0:
      return self.inputs[0, 0, :]
    return self.targets[(step - 1) % self.steps_per_epoch, -1, :]


def load_corpus(path: str, *, lowercase: bool = False, raw_newlines: bool = False,
                seq_length: int, batch_size: int, val_fraction: float = 0.0) -> Corpus:
  """`load_text`, the vocabulary (of the whole text), the training chunks and the held-out tail.

  Raises:
    UserError: as `load_text`; a training part too short for one chunk per
      stream, or a held-out tail too short for one prediction.
  """
  text = load_text(path, lowercase, raw_newlines)
  vocab = Vocab.from_text(text)
  ids = vocab.encode(text)
  split = split_point(len(ids), val_fraction) if val_fraction > 0 else len(ids)
  if val_fraction > 0 and len(ids) - split < 2:
    raise UserError(
        f"--val_fraction={val_fraction} holds out {len(ids) - split} character(s) of "
        f"{len(ids):,}: one prediction needs two. Use a larger --val_fraction or a longer text.")
  if val_fraction > 0 and num_chunks(split, seq_length) < batch_size:
    raise UserError(
        f"--val_fraction={val_fraction} leaves {split:,} of the text's {len(ids):,} characters "
        f"to train on: too few for {batch_size} stream(s) of one chunk of seq_length + 1 = "
        f"{seq_length + 1} characters. Use a smaller --val_fraction (0.1 is usual).")
  inputs, targets = stream_chunks(ids[:split], seq_length, batch_size)
  return Corpus(text, path or BUILTIN_CORPUS_NAME, vocab, inputs, targets,
                np.ascontiguousarray(ids[split:]), split)


def corpus_of(config: Any) -> Corpus:
  """`load_corpus` with a run's settings (a config.TrainConfig: data_path, lowercase,
  raw_newlines, seq_length, batch_size, val_fraction)."""
  return load_corpus(config.data_path, lowercase=config.lowercase,
                     raw_newlines=config.raw_newlines, seq_length=config.seq_length,
                     batch_size=config.batch_size, val_fraction=config.val_fraction)


def fingerprint(text: str) -> str:
  """"length:crc32" of a text: checkpoints record it, so a run resumed or scored on a text that
  changed since is noticed."""
  return f"{len(text)}:{zlib.crc32(text.encode('utf-8')):08x}"
