"""The run's text as the trainer walks it: the split, the streams, the windows a call reads."""

import dataclasses

import numpy as np
import pytest

from jax_charrnn import data, walk
from jax_charrnn.errors import UserError


def _file(tmp_path, text, name="t.txt"):
  p = tmp_path / name
  p.write_text(text, encoding="utf-8")
  return str(p)


def test_the_corpus_trains_on_the_head_and_holds_out_the_tail(tmp_path):
  text = "abcdefghij" * 100  # 1,000 characters
  c = walk.load(_file(tmp_path, text), seq_length=10, batch_size=1, val_fraction=0.25)
  assert c.num_train == 750 and len(c.val_ids) == 250 and c.num_symbols == 1000
  assert c.vocab.decode(c.val_ids.read()) == text[750:]
  assert c.inputs.shape == (74, 10, 1)  # floor((750 - 1) / 10) chunks, all from the head
  assert c.targets.max() < c.vocab.size and c.inputs[-1, -1, 0] == c.vocab.encode(text[739])[0]
  np.testing.assert_array_equal(c.next_chars(3), c.targets[2, -1, :])
  whole = walk.load(_file(tmp_path, text), seq_length=10, batch_size=1)
  assert len(whole.val_ids) == 0 and whole.inputs.shape[0] == 99


@pytest.mark.parametrize("batch", [1, 3])
def test_the_walk_is_the_in_memory_walk_of_the_course(tmp_path, batch):
  """The windows a call reads are the chunks data.stream_chunks lays out (the walk the trainer
  always took), at every step and across epoch boundaries, in any count."""
  text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(997))
  c = walk.load(_file(tmp_path, text), seq_length=7, batch_size=batch)
  ids = c.vocab.encode(text)
  inputs, targets = data.stream_chunks(ids, 7, batch)
  n = len(inputs)
  assert c.steps_per_epoch == n
  np.testing.assert_array_equal(c.inputs, inputs)
  np.testing.assert_array_equal(c.targets, targets)
  for step, count in ((0, 1), (5, 3 * n + 2), (n - 1, 2), (2 * n + 4, 17)):
    w = c.windows(step, count)
    at = (step + np.arange(count)) % n
    np.testing.assert_array_equal(w[:, :-1], inputs[at])
    np.testing.assert_array_equal(w[:, 1:], targets[at])
  np.testing.assert_array_equal(c.windows(3, 5, streams=[batch - 1]), c.windows(3, 5)[..., -1:])


def test_a_three_way_split_holds_out_then_tests(tmp_path):
  """enwik8's split by position: the first 90% train, the next 5% validate, the last 5% test."""
  c = walk.load(_file(tmp_path, "x" * 1000 + "y" * 1000), seq_length=10, batch_size=1,
                val_fraction=0.05, test_fraction=0.05)
  assert (c.num_train, c.num_val, len(c.test_ids)) == (1800, 100, 100)
  assert walk.split_points(100_000_000, 0.05, 0.05) == (90_000_000, 95_000_000)
  assert walk.split_points(1_115_394, 0.1) == (1_003_854, 1_115_394)  # nanoGPT's, no test part
  with pytest.raises(UserError, match=r"--test_fraction=0.0001 holds out 1 character\(s\)"):
    walk.load(_file(tmp_path, "x" * 1000), seq_length=10, batch_size=1, test_fraction=0.0001)


def test_a_held_out_tail_too_short_for_one_prediction_is_refused(tmp_path):
  with pytest.raises(UserError, match="holds out 1 character"):
    walk.load(_file(tmp_path, "abcdefghij" * 10), seq_length=5, batch_size=1, val_fraction=0.01)


def test_a_held_out_tail_of_two_characters_is_enough(tmp_path):
  c = walk.load(_file(tmp_path, "abcdefghij" * 10), seq_length=5, batch_size=1,
                val_fraction=0.02)
  assert len(c.val_ids) == 2 and c.num_train == 98


def test_next_chars_follow_the_walk_across_the_epoch_boundary(tmp_path):
  text = "".join(chr(ord("A") + i) for i in range(43))  # distinct characters A, B, ...
  c = walk.load(_file(tmp_path, text), seq_length=5, batch_size=2)
  # 42 predictions -> 8 chunks -> 4 per stream; stream 0 reads A..T, stream 1 the next 20.
  assert c.steps_per_epoch == 4 and c.inputs.shape == (4, 5, 2)
  ch = lambda i: c.vocab.decode([i])  # noqa: E731
  assert ch(c.next_char(0)) == "A"
  assert [ch(i) for i in c.next_chars(0)] == ["A", "U"]
  assert ch(c.next_char(1)) == "F" and [ch(i) for i in c.next_chars(1)] == ["F", "Z"]
  assert ch(c.next_char(3)) == "P" and [ch(i) for i in c.next_chars(3)] == ["P", "d"]
  # After the last chunk of an epoch: where that chunk stops (the state is reset anyway).
  assert ch(c.next_char(4)) == "U" and [ch(i) for i in c.next_chars(4)] == ["U", "i"]
  assert c.next_char(5) == c.next_char(1)  # epoch 2 walks as epoch 1


def test_the_defaults_keep_case_read_line_endings_as_text_and_hold_out_nothing(tmp_path):
  p = tmp_path / "t.txt"
  p.write_bytes(b"Ab\r\ncD" * 20)
  c = walk.load(str(p), seq_length=5, batch_size=1)
  assert c.text(0, c.num_symbols) == "Ab\ncD" * 20 and c.source == str(p)
  assert c.num_train == c.num_symbols and len(c.val_ids) == 0
  assert walk.load("", seq_length=5, batch_size=1).source == data.BUILTIN_CORPUS_NAME


def test_the_corpus_is_immutable_and_walked_again_on_request(tmp_path):
  c = walk.load(_file(tmp_path, "abcdefghij" * 10), seq_length=5, batch_size=2)
  with pytest.raises(dataclasses.FrozenInstanceError):
    c.num_train = 0
  again = c.walked(3, 1)
  assert (again.seq_length, again.batch_size, again.tokens) == (3, 1, c.tokens)
  with pytest.raises(UserError, match="--batch_size=99 is too large"):
    c.walked(5, 99)


def test_too_short_a_text_for_one_chunk_names_both_sizes(tmp_path):
  with pytest.raises(UserError, match=r"has 10 characters, but one training chunk needs "
                                      r"seq_length \+ 1 = 26"):
    walk.load(_file(tmp_path, "abcdefghij"), seq_length=25, batch_size=1)
