"""A text as a file of symbol ids, made once and read in blocks: how a run reads a text of any size.

  t = tokens.of_file("enwik8", unit="byte", cache_dir="")   # or unit="char" (the default)
  t.symbols[a:b].read()        ids of symbols a .. b-1, int32 (read from disk when asked)
  t.vocab, t.fingerprint       the sorted distinct symbols; "length:crc32" of the text as read

The first run on a file makes its token file in two streaming passes over it, in blocks (never
the whole text as one string or one array): the vocabulary and the fingerprint, then the ids,
uint8 when the vocabulary has at most 256 symbols, uint16 up to 65,536, uint32 beyond (every
Unicode code point fits). The ids go into a cache directory (`--cache_dir`; by default
$JAX_CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/jax_charrnn, else ~/.cache/jax_charrnn), one entry
per file and way of reading it, with a meta.json beside them: the vocabulary, the fingerprint,
the source file's size, time and crc32, and the ids' crc32. Later runs check the entry against
the file (its size, time and crc32: an edited file is read again) and against itself (the ids'
size and crc32: a damaged entry is made again), both in one pass each, and then read it in blocks
(`Symbols`): nothing the process holds grows with the text. An entry is built in a temporary
directory and renamed whole when complete, under a lock, so a half-written entry is never used
and two trainers making the same one wait for each other.

Both passes read the file through `data.pieces`, as `data.load_text` reads a small one whole:
the same symbols, vocabulary and fingerprint. The unit "char" reads UTF-8 text (the course's);
"byte" takes the file's bytes as they are (K <= 256: enwik8, text that is not UTF-8, any file),
each held as the character chr(b) (data.Vocab shows them as text).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
import zlib
from typing import Any, Callable

import numpy as np

from jax_charrnn import data
from jax_charrnn.data import Vocab
from jax_charrnn.errors import UserError

FORMAT = 1
_CODE_POINTS = 0x110000   # every Unicode code point


# ---- the symbols, where they are ----

class _File:
  """A token file opened once, for reading, by the Symbols that share it."""

  def __init__(self, path: str):
    self.path, self._fd = path, None
    self._close = os.close  # kept: at interpreter exit, the module's globals may be gone first

  def pread(self, size: int, offset: int) -> bytes:
    if self._fd is None:
      self._fd = os.open(self.path, os.O_RDONLY)
    return os.pread(self._fd, size, offset)

  def __del__(self):
    if self._fd is not None:
      self._close(self._fd)


class Symbols:
  """Symbol ids in a file (read in blocks when asked, never mapped whole) or in an array.

  `len(s)`, `s[a:b]` (a view: nothing is read) and `s.read()` (this view's ids, int32). A
  view of a file reads with os.pread, so the process's memory holds what it reads, not the
  file: nanoGPT maps its token file anew for every batch for the same reason.
  """

  def __init__(self, array: np.ndarray | None = None, *, path: str = "", dtype: Any = None,
               count: int = 0, start: int = 0, stop: int | None = None):
    self._array, self._path = array, path
    self._file = _File(path) if array is None else None
    self._dtype = np.dtype(dtype if array is None else array.dtype)
    total = len(array) if array is not None else count
    self._total = total
    self._start, self._stop = start, total if stop is None else stop

  def __len__(self) -> int:
    return self._stop - self._start

  def __getitem__(self, key):
    if isinstance(key, slice):
      start, stop, step = key.indices(len(self))
      if step != 1:
        raise ValueError("Symbols slice with a step")
      view = Symbols.__new__(Symbols)
      view.__dict__.update(self.__dict__)
      view._start, view._stop = self._start + start, self._start + max(start, stop)
      return view
    index = range(len(self))[key]
    return int(self[index:index + 1].read()[0])

  def read(self) -> np.ndarray:
    """This view's ids, int32 [len]."""
    if self._array is not None:
      return np.asarray(self._array[self._start:self._stop], np.int32)
    item = self._dtype.itemsize
    want = len(self) * item
    raw = self._file.pread(want, self._start * item) if want else b""
    if len(raw) != want:
      raise UserError(f"The token file {self._path!r} is shorter than its record says "
                      "(damaged since it was checked); run the command again to rebuild it.")
    return np.frombuffer(raw, self._dtype).astype(np.int32)

  def __array__(self, dtype=None, copy=None):
    ids = self.read()
    return ids if dtype is None else ids.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Tokens:
  """A text as symbol ids: where they are, its vocabulary, its fingerprint, where it came from."""

  symbols: Symbols
  vocab: Vocab
  fingerprint: str       # "length:crc32" of the text as read (what checkpoints record)
  source: str            # the file, or the built-in corpus's name


def of_text(text: str, source: str, unit: str = "char") -> Tokens:
  """The tokens of symbols held in memory (data.load_text's: the built-in corpus, small texts)."""
  vocab = Vocab.from_text(text, unit)
  return Tokens(Symbols(vocab.encode(text)), vocab, data.fingerprint(text, unit), source)


# ---- the two passes ----

def _codes(piece: str) -> np.ndarray:
  """A piece's code points, uint32 (a byte's value for bytes: chr(b) per byte)."""
  return np.frombuffer(piece.encode("utf-32-le"), np.uint32)


def scan(path: str, unit: str = "char", lowercase: bool = False,
         raw_newlines: bool = False) -> tuple[Vocab, str]:
  """The first pass: (the vocabulary, the fingerprint) of the file as read, in pieces; the
  same as `Vocab.from_text` and `data.fingerprint` of the text read whole."""
  present = np.zeros(_CODE_POINTS, bool)
  length, crc = 0, 0
  encoding = "latin-1" if unit == "byte" else "utf-8"
  for piece in data.pieces(path, unit, lowercase, raw_newlines):
    present[_codes(piece)] = True
    length += len(piece)
    crc = zlib.crc32(piece.encode(encoding), crc)
  chars = tuple(chr(c) for c in np.flatnonzero(present))
  return Vocab(chars, unit), f"{length}:{crc:08x}"


def id_dtype(vocab_size: int) -> np.dtype:
  """The narrowest unsigned type that holds every id of a vocabulary of this size."""
  for dtype in (np.uint8, np.uint16, np.uint32):
    if vocab_size <= np.iinfo(dtype).max + 1:
      return np.dtype(dtype)
  raise UserError(f"The text has {vocab_size:,} distinct symbols, more than a token file's "
                  "ids can hold.")


def write_ids(path: str, out, vocab: Vocab, lowercase: bool, raw_newlines: bool) -> tuple[int, int]:
  """The second pass: every symbol's id, in the vocabulary's id type, written to the open file
  `out`; returns (how many, the crc32 of the bytes written)."""
  lut = np.zeros(_CODE_POINTS, id_dtype(vocab.size))
  lut[[ord(c) for c in vocab.chars]] = np.arange(vocab.size)
  count, crc = 0, 0
  for piece in data.pieces(path, vocab.unit, lowercase, raw_newlines):
    ids = lut[_codes(piece)].tobytes()
    out.write(ids)
    crc = zlib.crc32(ids, crc)
    count += len(piece)
  return count, crc


# ---- the cache ----

def default_cache_dir() -> str:
  """$JAX_CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/jax_charrnn, else ~/.cache/jax_charrnn."""
  if os.environ.get("JAX_CHARRNN_CACHE_DIR"):
    return os.environ["JAX_CHARRNN_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jax_charrnn")


def file_crc(path: str) -> int:
  """crc32 of a file's bytes, read in blocks."""
  crc = 0
  with open(path, "rb") as f:
    while raw := f.read(data.BLOCK):
      crc = zlib.crc32(raw, crc)
  return crc


@dataclasses.dataclass(frozen=True)
class Reading:
  """A file and how it is read: what one cache entry holds the ids of."""

  path: str              # the real path
  unit: str = "char"
  lowercase: bool = False
  raw_newlines: bool = False

  def key(self) -> str:
    what = json.dumps([self.path, self.unit, self.lowercase, self.raw_newlines, FORMAT])
    name = os.path.basename(self.path)[:40] or "text"
    return f"{name}-{hashlib.sha256(what.encode()).hexdigest()[:16]}"

  def options(self) -> dict:
    return {"unit": self.unit, "lowercase": self.lowercase, "raw_newlines": self.raw_newlines}


def _stale(reading: Reading, meta: dict, entry: str) -> str | None:
  """Why an entry cannot be used for `reading` (None: it can)."""
  if meta.get("format") != FORMAT or meta.get("options") != reading.options():
    return "it was made by another version or for another reading"
  st = os.stat(reading.path)
  if (meta.get("size"), meta.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
    return "the file changed since it was made (its size or time)"
  ids = os.path.join(entry, "ids.bin")
  item = np.dtype(meta["dtype"]).itemsize
  if not os.path.exists(ids) or os.path.getsize(ids) != meta["count"] * item:
    return "its ids are missing or cut short"
  if file_crc(reading.path) != meta["source_crc32"]:
    return "the file's content changed since it was made"
  if file_crc(ids) != meta["ids_crc32"]:
    return "its ids do not match the checksum saved with them"
  return None


def _build(reading: Reading, entry: str, say: Callable[[str], None], shown: str) -> None:
  """Makes the entry in a temporary directory and renames it whole into place (the temporary
  directories of builders that died are removed first: the lock is held); shown: the file's
  name as the user gave it."""
  root, name = os.path.split(entry)
  for stale in os.listdir(root):
    if stale.startswith(f"{name}.tmp"):
      shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
  tmp = f"{entry}.tmp{os.getpid()}"
  os.makedirs(tmp)
  try:
    st, start = os.stat(reading.path), time.perf_counter()
    say(f"Reading {shown} ({st.st_size:,} bytes) into its token file, once...")
    vocab, fp = scan(reading.path, reading.unit, reading.lowercase, reading.raw_newlines)
    dtype = id_dtype(vocab.size)
    with open(os.path.join(tmp, "ids.bin"), "wb") as out:
      count, ids_crc = write_ids(reading.path, out, vocab, reading.lowercase,
                                 reading.raw_newlines)
      out.flush()
      os.fsync(out.fileno())
    meta = {"format": FORMAT, "source": reading.path, "options": reading.options(),
            "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "source_crc32": file_crc(reading.path), "vocab": vocab.to_json(),
            "fingerprint": fp, "count": count, "dtype": dtype.name, "ids_crc32": ids_crc}
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
      json.dump(meta, f)
    if os.path.exists(entry):
      shutil.rmtree(entry)
    os.rename(tmp, entry)
    seconds = time.perf_counter() - start
    say(f"Made its token file in {seconds:.1f} s ({st.st_size / 2**20 / max(seconds, 1e-9):,.1f} "
        f"MB/s): {count:,} symbols, K = {vocab.size}, {dtype.name} ids.")
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


@contextlib.contextmanager
def _locked(path: str):
  """An exclusive lock on `path` (made if missing) for the block: one builder at a time."""
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read_meta(entry: str) -> dict | None:
  try:
    with open(os.path.join(entry, "meta.json"), encoding="utf-8") as f:
      meta = json.load(f)
    return meta if isinstance(meta, dict) else None
  except (OSError, ValueError):
    return None


def of_file(path: str, unit: str = "char", lowercase: bool = False, raw_newlines: bool = False,
            cache_dir: str = "", say: Callable[[str], None] | None = None,
            warn: Callable[[str], None] | None = None, name: str = "") -> Tokens:
  """The tokens of a file, from its cache entry (made first if missing, stale or damaged);
  name: how the file is called (its source in reports; default: path).

  Raises:
    UserError: the file cannot be read or decoded, is empty; the cache directory cannot be
      written, or the disk filled while writing (nothing half-written is kept).
  """
  say, warn, shown = say or (lambda _: None), warn or (lambda _: None), name or path
  reading = Reading(os.path.realpath(path), unit, lowercase, raw_newlines)
  root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
  entry = os.path.join(root, reading.key())
  try:
    os.makedirs(root, exist_ok=True)
    with _locked(entry + ".lock"):
      meta = _read_meta(entry)
      why = _stale(reading, meta, entry) if meta is not None else (
          "its record cannot be read" if os.path.exists(entry) else None)
      if meta is None or why is not None:
        if why is not None:
          warn(f"The token file of {shown} in {entry} cannot be used ({why}); making it again.")
        _build(reading, entry, say, shown)
        meta = _read_meta(entry)
  except OSError as e:
    raise UserError(
        f"Cannot make the token file of {shown!r} in the cache directory {root!r} "
        f"({e.strerror or e}); nothing half-written was kept. Free some space, or pass "
        "--cache_dir=DIR (a directory you can write to, with room for the text's ids).") from None
  symbols = Symbols(path=os.path.join(entry, "ids.bin"), dtype=meta["dtype"], count=meta["count"])
  return Tokens(symbols, Vocab.from_json(meta["vocab"]), meta["fingerprint"], shown)
