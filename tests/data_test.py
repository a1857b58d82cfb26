import json

import numpy as np
import pytest

from jax_charrnn import data
from jax_charrnn.errors import UserError


def test_vocab_round_trip_and_sorted(tiny_text):
  v = data.Vocab.from_text(tiny_text)
  assert list(v.chars) == sorted(set(tiny_text))
  assert v.size == len(set(tiny_text))
  ids = v.encode(tiny_text)
  assert ids.dtype == np.int32 and ids.shape == (len(tiny_text),)
  assert v.decode(ids) == tiny_text
  assert data.Vocab.from_json(v.to_json()) == v


def test_vocab_is_stable_across_orderings():
  a = data.Vocab.from_text("cabbage")
  b = data.Vocab.from_text("".join(reversed("cabbage")))
  assert a == b and a.chars == ("a", "b", "c", "e", "g")
  assert a.encode("cab").tolist() == [2, 0, 1]


def test_vocab_json_keeps_unicode():
  v = data.Vocab.from_text("Ünïcode – “quotes”\n")
  assert json.loads(v.to_json())["chars"] == "".join(v.chars)
  assert data.Vocab.from_json(v.to_json()).decode(v.encode("“Ü”")) == "“Ü”"


def test_encode_unknown_character_names_it_and_its_position():
  v = data.Vocab.from_text("abc")
  with pytest.raises(ValueError, match=r"'z' at position 2"):
    v.encode("abz")


def test_decode_rejects_out_of_range_ids():
  with pytest.raises(ValueError):
    data.Vocab.from_text("abc").decode([0, 3])


def test_chunks_follow_the_course_walk():
  ids = np.arange(103, dtype=np.int32)
  inputs, targets = data.chunks(ids, 25)
  # floor((103 - 1) / 25) = 4 chunks; e advances by 25; the last 2 characters are unused.
  assert inputs.shape == targets.shape == (4, 25)
  np.testing.assert_array_equal(inputs[1], np.arange(25, 50))
  np.testing.assert_array_equal(targets, inputs + 1)
  assert targets.max() == 100  # nothing past the end


def test_chunks_exactly_one():
  inputs, targets = data.chunks(np.arange(26), 25)
  assert inputs.shape == (1, 25) and targets[0, -1] == 25


def test_chunks_too_short_is_a_clear_error():
  with pytest.raises(UserError, match="seq_length \\+ 1 = 26"):
    data.chunks(np.arange(25), 25)


def test_num_chunks_of_the_course_book():
  assert data.num_chunks(1_107_542, 25) == 44_301


def test_stream_chunks_batch_one_is_the_course_walk():
  ids = np.arange(251) % 7
  i1, t1 = data.chunks(ids, 10)
  ib, tb = data.stream_chunks(ids, 10, 1)
  np.testing.assert_array_equal(ib[:, :, 0], i1)
  np.testing.assert_array_equal(tb[:, :, 0], t1)


def test_stream_chunks_streams_are_contiguous_parts():
  ids = np.arange(1000, dtype=np.int32)
  inputs, targets = data.stream_chunks(ids, 10, 4)
  # 99 chunks -> 24 per stream; stream i starts at chunk 24 * i.
  assert inputs.shape == (24, 10, 4)
  for i in range(4):
    np.testing.assert_array_equal(inputs[:, :, i].reshape(-1), np.arange(240 * i, 240 * (i + 1)))
  np.testing.assert_array_equal(targets, inputs + 1)


def test_stream_chunks_batch_too_large():
  with pytest.raises(UserError, match="at most 9 streams"):
    data.stream_chunks(np.arange(100), 11, 10)


def test_load_text_utf8_and_lowercase(tmp_path):
  p = tmp_path / "t.txt"
  p.write_text("Hällo Wörld", encoding="utf-8")
  assert data.load_text(str(p)) == "Hällo Wörld"
  assert data.load_text(str(p), lowercase=True) == "hällo wörld"


def test_load_text_builtin_corpus():
  text = data.load_text("")
  assert len(text) > 100_000 and "def" in text


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "latin1"])
def test_load_text_errors_say_which_and_where(tmp_path, kind):
  path = tmp_path / "book.txt"
  if kind == "directory":
    path.mkdir()
    match = "is a directory"
  elif kind == "empty":
    path.write_bytes(b"")
    match = "is empty"
  elif kind == "latin1":
    path.write_bytes("abc café".encode("latin-1"))
    match = "not UTF-8 text: byte offset 7 \\(0xe9\\)"
  else:
    match = "does not exist"
  with pytest.raises(UserError, match=match) as e:
    data.load_text(str(path))
  assert str(path) in str(e.value)


def test_line_endings_are_read_as_python_text_mode_reads_them(tmp_path):
  p = tmp_path / "crlf.txt"
  p.write_bytes(b"one\r\ntwo\rthree\n\r\n")
  assert data.load_text(str(p)) == "one\ntwo\nthree\n\n"
  with open(p, encoding="utf-8") as f:  # what the course's code saw
    assert data.load_text(str(p)) == f.read()
  assert data.load_text(str(p), raw_newlines=True) == "one\r\ntwo\rthree\n\r\n"


def test_nanogpt_split_of_tiny_shakespeare():
  n = 1_115_394
  split = data.split_point(n, 0.1)
  assert split == int(n * 0.9) and n - split == 111_540


def test_encode_known_marks_characters_outside_the_vocabulary():
  v = data.Vocab.from_text("abc")
  ids, unknown = v.encode_known("abxcay")
  assert ids.tolist() == [0, 1, 3, 2, 0, 3] and unknown == {"x": 1, "y": 1}


# --- Behaviours the mutation pass (mutation/run.py) found unstated ---------------------------


def test_vocab_is_immutable():
  import dataclasses  # pylint: disable=g-import-not-at-top
  v = data.Vocab.from_text("abc")
  with pytest.raises(dataclasses.FrozenInstanceError):
    v.chars = ("x",)


def test_decode_rejects_negative_ids():
  with pytest.raises(ValueError):
    data.Vocab.from_text("abc").decode([0, -1])
  assert data.Vocab.from_text("abc").decode(np.array([[2, 0]])) == "ca"  # any shape, flattened


def test_vocab_json_is_readable_text_not_escapes():
  # The meta file is for people too: "é" stays "é", not "\u00e9".
  assert "é" in data.Vocab.from_text("café").to_json()


def test_a_missing_directory_is_reported_as_missing(tmp_path):
  path = tmp_path / "no_such_dir" / "book.txt"
  with pytest.raises(UserError, match="does not exist"):
    data.load_text(str(path))


def test_the_smallest_chunk_and_stream_sizes_are_accepted_and_zero_refused():
  inputs, targets = data.chunks(np.arange(5), 1)  # T = 1: four chunks of one character
  assert inputs.tolist() == [[0], [1], [2], [3]] and targets.tolist() == [[1], [2], [3], [4]]
  with pytest.raises(UserError):
    data.chunks(np.arange(5), 0)
  i, t = data.stream_chunks(np.arange(21), 10, 2)  # exactly one chunk per stream
  assert i.shape == (1, 10, 2) and t[0, -1].tolist() == [10, 20]
  with pytest.raises(UserError):
    data.stream_chunks(np.arange(21), 10, 0)
  with pytest.raises(UserError):
    data.stream_chunks(np.arange(20), 10, 2)  # 19 predictions: one chunk, not two




def test_head_reads_the_first_symbols_and_no_further(tmp_path, monkeypatch):
  path = tmp_path / "t.txt"
  path.write_bytes("Caf\u00e9 au lait\r\nand tea.\r\n".encode())
  assert data.head(str(path), 100) == ("Caf\u00e9 au lait\nand tea.\n", False)
  assert data.head(str(path), 6, lowercase=True) == ("caf\u00e9 a", True)
  assert data.head(str(path), 5, unit="byte") == ("Caf\xc3\xa9", True)  # the bytes of "Café"
  assert data.head(str(path), 22) == ("Caf\u00e9 au lait\nand tea.\n", False)  # all, exactly
  assert data.head(str(path), 21) == ("Caf\u00e9 au lait\nand tea.", True)

  def endless(*_, **__):  # a text without an end: head stops taking pieces at the limit
    while True:
      yield "abc"

  monkeypatch.setattr(data, "pieces", endless)
  assert data.head(str(path), 10) == ("abcabcabca", True)
