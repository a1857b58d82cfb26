"""A byte-level run (--unit=byte): any file's bytes are its symbols, through every command; a
three-way split whose test part evaluate scores; the unit a resume cannot change."""

import json
import os
import re

import jax
import numpy as np
import pytest

from jax_charrnn import data, export, generate, saved, trainer, visualize, walk
from jax_charrnn.console import Console
from jax_charrnn.errors import UserError

from helpers import assert_user_error, run_module, small_config

# Latin-1 text with a few bytes that are not UTF-8, and UTF-8 text: bytes either way.
BLOB = b"".join(f"{i} caf\xe9 au lait, cr\xe8me br\xfbl\xe9e. ".encode("latin-1")
                + "naïve “quotes” — ünïcode. ".encode("utf-8") for i in range(40))


@pytest.fixture(scope="module")
def byte_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("bytes")
  path = root / "blob.bin"
  path.write_bytes(BLOB)
  cfg = small_config(str(path), unit="byte", val_fraction=0.1, test_fraction=0.1,
                     num_steps=40, report_every=20, sample_length=40)
  trainer.train(cfg, str(root / "run"))
  return str(root / "run"), str(path), cfg


def test_the_symbols_are_the_files_bytes(byte_run):
  workdir, path, _ = byte_run
  s = saved.load(workdir)
  assert s.vocab.unit == "byte" and s.vocab.size == len(set(BLOB))
  assert s.meta["num_chars"] == len(BLOB) and s.config.unit == "byte"
  assert s.meta["text"] == data.fingerprint(BLOB.decode("latin-1"), "byte")
  with pytest.raises(UserError, match="not UTF-8"):  # as characters the file cannot be read
    data.load_text(path)


def test_people_read_bytes_as_text_where_they_decode_and_escaped_where_not(byte_run):
  workdir, _, _ = byte_run
  vocab = saved.load(workdir).vocab
  symbols = BLOB[:40].decode("latin-1")
  shown = vocab.show(symbols)
  assert "caf\\xe9 au lait" in shown and "\ufffd" not in shown
  assert vocab.show(vocab.symbols_of("naïve “q”")) == "naïve “q”"
  show = vocab.shower()  # a character split between two pieces is shown whole
  utf8 = "ü".encode("utf-8").decode("latin-1")
  assert show(utf8[0]) + show(utf8[1]) + show("", final=True) == "ü"
  assert vocab.show_each(utf8) == ["\\xc3", "\\xbc"] and vocab.show_each("a\n") == ["a", "\n"]
  samples = open(os.path.join(workdir, "samples.txt"), encoding="utf-8").read()
  assert samples.count("---") >= 2  # written as text a person reads


def test_a_prime_is_read_as_its_utf8_bytes(byte_run):
  workdir, _, _ = byte_run
  s = saved.load(workdir)
  prime = s.vocab.symbols_of("naïve")
  assert len(prime) == 6 and s.vocab.missing(prime) == []
  text = generate.generate(s.net, s.params, s.vocab, s.carry, s.x0, 20, jax.random.key(0),
                           prime=prime)[0]
  assert s.vocab.show(text).startswith("naïve")
  with pytest.raises(UserError, match="holds bytes the model does not know"):
    generate.generate(s.net, s.params, s.vocab, s.carry, s.x0, 5, jax.random.key(0),
                      prime=s.vocab.symbols_of("日本"))


@pytest.mark.slow
def test_the_commands_read_and_write_in_the_runs_unit(byte_run, tmp_path):
  workdir, path, _ = byte_run
  r = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--length=30", "--prime=naïve")
  assert r.returncode == 0 and r.stdout.startswith("naïve"), r.stderr[-2000:]
  val = json.loads(run_module("jax_charrnn.evaluate", f"--workdir={workdir}", "--json").stdout)
  test = json.loads(run_module("jax_charrnn.evaluate", f"--workdir={workdir}", "--json",
                               "--split=test").stdout)
  val_start, test_start = walk.split_points(len(BLOB), 0.1, 0.1)
  assert val["predictions"] == test_start - val_start - 1
  assert test["predictions"] == len(BLOB) - test_start - 1
  assert "held-out tail" in val["text"] and "test part" in test["text"] and "bytes" in test["text"]
  assert val["bits_per_char"] != test["bits_per_char"]
  other = tmp_path / "other.bin"
  other.write_bytes(b"\x00\x01 caf\xe9")  # two bytes the run never saw (one is predicted)
  r = run_module("jax_charrnn.evaluate", f"--workdir={workdir}", f"--data_path={other}")
  assert r.returncode == 0 and "skipped      1 predictions" in r.stdout, r.stdout
  assert "'\\\\x00' (1), '\\\\x01' (1)" in r.stdout, r.stdout
  r = run_module("jax_charrnn.visualize", f"--workdir={workdir}", f"--out={tmp_path / 'p.html'}")
  assert r.returncode == 0, r.stderr[-2000:]
  page = json.loads((tmp_path / "p.json").read_text())
  assert "\\xe9" in page["chars"] and all(len(c) == 1 or c.startswith("\\x") for c in page["chars"])


def test_export_says_the_unit(byte_run):
  workdir, _, _ = byte_run
  s = saved.load(workdir)
  arrays = export.state_dict(s.net, s.params, s.vocab)
  assert str(arrays["unit"]) == "byte" and len(arrays["vocab"]) == s.vocab.size


def test_the_page_shows_each_byte(byte_run, tmp_path):
  workdir, _, _ = byte_run
  w = visualize.write_page(saved.load(workdir), out=str(tmp_path / "v.html"))
  assert "bytes" in w.what and w.chars > 0


def test_the_unit_is_part_of_the_run(tmp_path):
  """An ASCII text reads alike as characters or bytes; a run of one is not resumed as the
  other."""
  book = tmp_path / "book.txt"
  book.write_text("harry and hermione. " * 200, encoding="ascii")
  cfg = small_config(str(book), unit="byte", num_steps=20)
  said = []

  class Recorded(Console):
    def say(self, text):
      said.append(text)

  trainer.train(cfg, str(tmp_path / "run"), console=Recorded())
  data_line = next(line for line in said if line.startswith("Data: "))
  assert re.match(r"Data: .*, 4000 bytes, K=\d+; \d+ updates per epoch of 1 x 10 bytes;",
                  data_line), data_line
  with pytest.raises(UserError, match=r"unit \('byte' saved, 'char' now\)"):
    trainer.train(cfg.replace(unit="char", num_steps=40), str(tmp_path / "run"))


def test_lowercase_and_bytes_and_a_split_of_everything_are_refused():
  with pytest.raises(UserError, match="lowercase applies to characters"):
    small_config("x.bin", unit="byte", lowercase=True)
  with pytest.raises(UserError, match="leave nothing to train on"):
    small_config("x.bin", val_fraction=0.5, test_fraction=0.5)


@pytest.mark.slow
def test_evaluate_refuses_a_split_the_run_does_not_have(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("harry and hermione. " * 200, encoding="utf-8")
  workdir = str(tmp_path / "run")
  trainer.train(small_config(str(book), val_fraction=0.1, num_steps=20), workdir)
  assert_user_error(run_module("jax_charrnn.evaluate", f"--workdir={workdir}", "--split=test"),
                    "test_fraction 0", "--test_fraction=0.1")
  assert np.isfinite(json.loads(run_module("jax_charrnn.evaluate", f"--workdir={workdir}",
                                           "--json").stdout)["bits_per_char"])
