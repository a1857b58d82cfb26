"""Text in, integer ids out: the vocabulary, reading a file, and the course's walk in memory.

NumPy only: nothing here touches JAX, so data preparation never allocates on
an accelerator and is easy to test.

A file is read in one way whatever its size (`char_pieces`, `byte_pieces`): a small text whole
(`load_text`), a large one in pieces into its token file (tokens.py), the same symbols either
way. The unit of a run is the character (UTF-8 text, the course's) or the byte (any file).

The course walks the book in consecutive, non-overlapping chunks of
`seq_length` characters: chunk e reads inputs ids[e*T : e*T+T] and predicts
targets ids[e*T+1 : e*T+T+1] (the same characters shifted by one). A text of
N characters therefore gives floor((N - 1) / T) chunks; the characters after
the last full chunk are not used in that epoch (the course does the same).
`chunks` and `stream_chunks` lay a small text's walk out in memory; walk.py
reads any text's walk from its token file, a call at a time.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import zlib
from typing import Iterator, Sequence

import numpy as np

from jax_charrnn.errors import UserError

BUILTIN_CORPUS_NAME = "built-in corpus (CPython's pydoc_data.topics)"
UNITS = ("char", "byte")
BLOCK = 16 << 20  # bytes of a file read at a time


@dataclasses.dataclass(frozen=True)
class Vocab:
  """The symbols of a text, with stable integer ids.

  Ids follow `sorted(set(text))`, so the same text always gives the same ids
  (a bare `set` would not, and restored weights would read the wrong columns).
  A symbol is a character (unit "char") or a byte (unit "byte"), then held as
  the character chr(b) so that every function here works alike; `show` turns
  symbols into text a person reads, `symbols_of` a person's text into symbols.
  """

  chars: tuple[str, ...]
  unit: str = "char"

  def __post_init__(self):
    if list(self.chars) != sorted(set(self.chars)):
      raise ValueError("Vocab.chars must be sorted and free of repeats.")
    if self.unit not in UNITS or (self.unit == "byte" and any(ord(c) > 255 for c in self.chars)):
      raise ValueError(f"Vocab.unit must be one of {UNITS}, its bytes below 256.")
    object.__setattr__(self, "_index", {ch: i for i, ch in enumerate(self.chars)})

  @classmethod
  def from_text(cls, text: str, unit: str = "char") -> "Vocab":
    if not text:
      raise ValueError("Cannot build a vocabulary from an empty text.")
    return cls(tuple(sorted(set(text))), unit)

  @property
  def size(self) -> int:
    """K, the number of distinct symbols."""
    return len(self.chars)

  def show(self, symbols: str) -> str:
    """Symbols as a person reads them: characters as they are; bytes decoded as UTF-8 where
    they decode, escaped (\\xNN) where not."""
    if self.unit == "char":
      return symbols
    return symbols.encode("latin-1").decode("utf-8", errors="backslashreplace")

  def shower(self):
    """`show` for a text that comes in pieces: `show(piece)`, then `show("", final=True)`; a
    byte sequence split between pieces is shown whole."""
    if self.unit == "char":
      return lambda piece, final=False: piece
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    return lambda piece, final=False: decoder.decode(piece.encode("latin-1"), final=final)

  def show_each(self, symbols: str) -> list[str]:
    """Each symbol as a person reads it alone: a character as it is; a byte as its ASCII
    character when printable (or a newline or tab), else escaped (\\xNN)."""
    if self.unit == "char":
      return list(symbols)
    return [c if " " <= c <= "~" or c in "\n\t" else f"\\x{ord(c):02x}" for c in symbols]

  def symbols_of(self, text: str) -> str:
    """A person's text (a prime) as symbols: itself, or for bytes its UTF-8 bytes."""
    return text if self.unit == "char" else text.encode("utf-8").decode("latin-1")
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
    """{"chars": ...} (and "unit": "byte" for bytes: a character run's JSON is what it was)."""
    d = {"chars": "".join(self.chars)}
    if self.unit != "char":
      d["unit"] = self.unit
    return json.dumps(d, ensure_ascii=False)

  @classmethod
  def from_json(cls, s: str) -> "Vocab":
    d = json.loads(s)
    return cls(tuple(d["chars"]), d.get("unit", "char"))


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


def check_file(path: str) -> str:
  """The data file's path (~ expanded), once it is known to be a regular file one can read.

  Raises:
    UserError: missing (or in a directory one cannot read), a directory, not a regular file
      (a device or a pipe, which could be read without end), or unreadable.
  """
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
  if not os.path.isfile(path):
    raise UserError(f"The data path {path!r} is not a regular file (a device or a pipe, which "
                    "may never end); pass a text file.")
  try:
    with open(path, "rb"):
      pass
  except OSError as e:
    raise UserError(f"Could not read the data file {path!r}: {e.strerror}.") from None
  return path


def _cut(text: str, final: bool, hold: int) -> int:
  """Where a piece ends so that the next is read alike: after its last newline or space (the
  context of lowercasing, e.g. a Greek final sigma, never crosses one), never between \\r and
  the \\n that may follow it. Text without either is held back up to `hold` characters."""
  if final:
    return len(text)
  end = max(text.rfind("\n"), text.rfind(" ")) + 1
  if end or len(text) < hold:
    return end
  return len(text) - text.endswith("\r")


def char_pieces(path: str, lowercase: bool = False, raw_newlines: bool = False,
                block: int = BLOCK) -> Iterator[str]:
  """The file's UTF-8 text in pieces, as Python's text mode reads it: a byte-order mark
  dropped; \\r\\n and \\r read as \\n (unless raw_newlines); lowercased if asked. The
  pieces join to the text read whole, whatever the block size.

  Raises:
    UserError: bad UTF-8 (named by its byte offset), an empty file.
  """
  decoder = codecs.getincrementaldecoder("utf-8")()
  held, offset, start, empty = "", 0, True, True
  with open(path, "rb") as f:
    while True:
      raw = f.read(block)
      final = not raw
      pending = len(decoder.getstate()[0])
      try:
        text = decoder.decode(raw, final=final)
      except UnicodeDecodeError as e:
        raise UserError(
            f"The data file {path!r} is not UTF-8 text: byte offset {offset - pending + e.start} "
            f"(0x{e.object[e.start]:02x}) cannot be decoded ({e.reason}). Convert it, e.g. with "
            "`iconv -f latin1 -t utf-8`, or read it as bytes with --unit=byte.") from None
      offset += len(raw)
      if start and text:  # a UTF-8 byte-order mark is not part of the text
        text, start = text.removeprefix("\ufeff"), False
      text = held + text
      end = _cut(text, final, hold=max(4 * block, 1 << 20))
      piece, held = text[:end], text[end:]
      piece = piece if raw_newlines else universal_newlines(piece)
      if piece:
        empty = False
        yield piece.lower() if lowercase else piece
      if final:
        break
  if empty:
    raise UserError(f"The data file {path!r} is empty; it needs some text to learn from.")


def byte_pieces(path: str, block: int = BLOCK) -> Iterator[str]:
  """The file's bytes in blocks, each as a string of one character chr(b) per byte."""
  empty = True
  with open(path, "rb") as f:
    while raw := f.read(block):
      empty = False
      yield raw.decode("latin-1")
  if empty:
    raise UserError(f"The data file {path!r} is empty; it needs some bytes to learn from.")


def pieces(path: str, unit: str = "char", lowercase: bool = False,
           raw_newlines: bool = False, block: int = BLOCK) -> Iterator[str]:
  """The file's symbols in pieces: `char_pieces` or `byte_pieces`."""
  if unit == "byte":
    return byte_pieces(path, block)
  return char_pieces(path, lowercase, raw_newlines, block)


def head(path: str, limit: int, unit: str = "char", lowercase: bool = False,
         raw_newlines: bool = False) -> tuple[str, bool]:
  """(the file's first `limit` symbols, whether more follow), read no further than that:
  blocks of a few bytes per symbol asked for (a UTF-8 character is at most 4), whatever the
  file's size (a text without a space or newline is read on to at most 1 MB past the limit)."""
  text = ""
  block = min(BLOCK, max(1 << 12, 4 * (limit + 2)))
  for piece in pieces(check_file(path), unit, lowercase, raw_newlines, block):
    text += piece[:limit + 1 - len(text)]
    if len(text) > limit:
      return text[:limit], True
  return text, False


def load_text(path: str, lowercase: bool = False, raw_newlines: bool = False,
              unit: str = "char") -> str:
  """A file's symbols whole (`pieces` joined; for a small text); "" means the built-in corpus.

  Line endings are read as Python's text mode reads them (\\r\\n and \\r become
  \\n), unless raw_newlines keeps every \\r as a character of its own. The
  course's book (CRLF line endings) is then 1,107,542 characters, K = 80. Bytes
  (unit "byte") are read as they are, one character chr(b) each.

  Raises:
    UserError: as `check_file` and `char_pieces`.
  """
  if not path:
    text = builtin_corpus()
    if unit == "byte":
      return text.encode("utf-8").decode("latin-1")
    text = text if raw_newlines else universal_newlines(text)
    return text.lower() if lowercase else text
  return "".join(pieces(check_file(path), unit, lowercase, raw_newlines))


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


def fingerprint(text: str, unit: str = "char") -> str:
  """"length:crc32" of a text (of its UTF-8 bytes; for bytes, of the bytes themselves):
  checkpoints record it, so a run resumed or scored on a text that changed since is noticed."""
  raw = text.encode("latin-1" if unit == "byte" else "utf-8")
  return f"{len(text)}:{zlib.crc32(raw):08x}"
