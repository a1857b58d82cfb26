"""A text's token file: made once in two streaming passes, checked on every later run, never
trusted when it is stale or damaged, the same symbols as the text read whole."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jax_charrnn import data, tokens
from jax_charrnn.errors import UserError

from helpers import REPO

TEXT = "Hello “world”\r\nΣΟΦΙΑ ΟΔΟΣ said the sage.\n" * 40


def _file(tmp_path, content, name="book.txt"):
  p = tmp_path / name
  p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
  return str(p)


def _reading(path, unit="char", lowercase=False, raw_newlines=False):
  return data.load_text(path, lowercase, raw_newlines, unit)


@pytest.mark.parametrize("unit,lowercase,raw_newlines", [
    ("char", False, False), ("char", True, False), ("char", False, True), ("byte", False, False)])
def test_the_token_file_holds_the_text_read_whole(tmp_path, monkeypatch, unit, lowercase,
                                                  raw_newlines):
  """Read in pieces of 7 bytes (every boundary: inside a character, between \\r and \\n, after
  a capital sigma), the ids, vocabulary and fingerprint are those of the text read whole."""
  monkeypatch.setattr(data, "BLOCK", 7)
  path = _file(tmp_path, TEXT)
  got = tokens.of_file(path, unit, lowercase, raw_newlines, cache_dir=str(tmp_path / "cache"))
  want = tokens.of_text(_reading(path, unit, lowercase, raw_newlines), path, unit)
  assert got.vocab == want.vocab and got.fingerprint == want.fingerprint
  np.testing.assert_array_equal(got.symbols.read(), want.symbols.read())
  np.testing.assert_array_equal(got.symbols[11:200].read(), want.symbols.read()[11:200])
  assert got.symbols[5] == want.symbols[5] and len(got.symbols) == len(want.symbols)
  assert got.fingerprint == data.fingerprint(_reading(path, unit, lowercase, raw_newlines), unit)


def test_ids_take_the_narrowest_type_that_holds_the_vocabulary(tmp_path):
  assert [tokens.id_dtype(k) for k in (2, 256, 257, 65_536, 65_537)] == [
      np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]
  many = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)) * 2  # 300 distinct characters
  t = tokens.of_file(_file(tmp_path, many), cache_dir=str(tmp_path / "c"))
  assert t.vocab.size == 300 and t.symbols._dtype == np.uint16
  assert t.vocab.decode(t.symbols.read()) == many


def test_a_later_run_uses_the_entry_and_an_edited_file_is_read_again(tmp_path):
  path, cache = _file(tmp_path, TEXT), str(tmp_path / "cache")
  said, warned = [], []
  first = tokens.of_file(path, cache_dir=cache, say=said.append, warn=warned.append)
  assert len(said) == 2 and "into its token file" in said[0] and not warned
  assert said[1].startswith("Made its token file in ") and "K = 24, uint8 ids" in said[1]
  again = tokens.of_file(path, cache_dir=cache, say=said.append, warn=warned.append)
  assert len(said) == 2 and not warned and again.fingerprint == first.fingerprint
  with open(path, "ab") as f:
    f.write("more text\n".encode())
  edited = tokens.of_file(path, cache_dir=cache, say=said.append, warn=warned.append)
  assert len(said) == 4 and "changed since it was made" in warned[0]
  assert edited.fingerprint != first.fingerprint


def test_an_edit_that_keeps_the_size_and_the_time_is_read_again(tmp_path):
  path, cache = _file(tmp_path, TEXT), str(tmp_path / "cache")
  tokens.of_file(path, cache_dir=cache)
  st = os.stat(path)
  with open(path, "r+b") as f:
    f.write(b"J")  # "Hello" -> "Jello", same size
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
  warned = []
  t = tokens.of_file(path, cache_dir=cache, warn=warned.append)
  assert "content changed" in warned[0] and t.vocab.decode(t.symbols[:5].read()) == "Jello"


@pytest.mark.parametrize("damage", ["flip", "cut", "meta"])
def test_a_damaged_entry_is_made_again_never_used(tmp_path, damage):
  path, cache = _file(tmp_path, TEXT), str(tmp_path / "cache")
  good = tokens.of_file(path, cache_dir=cache)
  entry = os.path.dirname(good.symbols._path)
  ids = os.path.join(entry, "ids.bin")
  if damage == "flip":
    with open(ids, "r+b") as f:
      f.seek(10)
      byte = f.read(1)
      f.seek(10)
      f.write(bytes([byte[0] ^ 1]))
  elif damage == "cut":
    os.truncate(ids, os.path.getsize(ids) - 3)
  else:
    with open(os.path.join(entry, "meta.json"), "w") as f:
      f.write("{not json")
  warned = []
  again = tokens.of_file(path, cache_dir=cache, warn=warned.append)
  assert len(warned) == 1 and "making it again" in warned[0], warned
  np.testing.assert_array_equal(again.symbols.read(), good.symbols.read() if damage != "flip"
                                else tokens.of_text(_reading(path), path).symbols.read())


def test_a_builder_that_dies_leaves_nothing_used(tmp_path, monkeypatch):
  """The disk filling while the ids are written: a paragraph, no entry, no temporary files;
  the next run makes the entry whole."""
  path, cache = _file(tmp_path, TEXT), str(tmp_path / "cache")
  real = tokens.write_ids

  def full(*args):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(tokens, "write_ids", full)
  with pytest.raises(UserError, match="No space left on device.*nothing half-written"):
    tokens.of_file(path, cache_dir=cache)
  assert [n for n in os.listdir(cache) if not n.endswith(".lock")] == []
  monkeypatch.setattr(tokens, "write_ids", real)
  assert tokens.of_file(path, cache_dir=cache).vocab.size > 0


def test_an_unwritable_cache_directory_is_a_paragraph(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match="--cache_dir=DIR"):
    tokens.of_file(_file(tmp_path, TEXT), cache_dir=str(blocker / "cache"))


def test_two_makers_of_one_entry_wait_for_each_other(tmp_path):
  """Two processes asked for the same token file at once: one makes it, the other waits and
  uses it; both read the same ids and one entry is left."""
  path, cache = _file(tmp_path, TEXT * 200), str(tmp_path / "cache")
  script = ("import sys; from jax_charrnn import tokens; "
            "t = tokens.of_file(sys.argv[1], cache_dir=sys.argv[2]); "
            "print(t.fingerprint, int(t.symbols.read().sum()))")
  env = dict(os.environ, PYTHONPATH=REPO)
  procs = [subprocess.Popen([sys.executable, "-c", script, path, cache], env=env,
                            stdout=subprocess.PIPE, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1] and outs[0].strip()
  assert sorted(n for n in os.listdir(cache) if not n.endswith(".lock"))[0].startswith("book")
  assert len([n for n in os.listdir(cache) if not n.endswith(".lock")]) == 1


def test_bytes_read_any_file_and_characters_refuse_what_is_not_utf8(tmp_path):
  raw = bytes(range(256)) * 3
  path = _file(tmp_path, raw, "blob.bin")
  with pytest.raises(UserError, match=r"byte offset 128 \(0x80\).*--unit=byte"):
    tokens.of_file(path, cache_dir=str(tmp_path / "c"))
  t = tokens.of_file(path, "byte", cache_dir=str(tmp_path / "c"))
  assert t.vocab.size == 256 and t.vocab.unit == "byte"
  np.testing.assert_array_equal(t.symbols.read(), np.frombuffer(raw, np.uint8))
  with pytest.raises(UserError, match="empty"):
    tokens.of_file(_file(tmp_path, b"", "empty.txt"), "byte", cache_dir=str(tmp_path / "c"))


def test_symbols_are_views_read_only_when_asked():
  s = tokens.Symbols(np.arange(10, dtype=np.int32))
  view = s[2:8][1:4]
  assert len(view) == 3 and view.read().tolist() == [3, 4, 5] and view[0] == 3
  assert len(s[8:2]) == 0 and s[8:2].read().tolist() == []
  with pytest.raises(ValueError):
    s[::2]
