"""--tensorboard: what the run writes, read back by TensorBoard's own reader."""

import json
import os

import pytest

from jax_charrnn import trainer

from helpers import TINY_TEXT, small_config, write_text

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def _read(workdir):
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"),
                                           size_guidance={"scalars": 0, "tensors": 0})
  acc.Reload()
  scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
  texts = {e.step: e.tensor_proto.string_val[0].decode()
           for tag in acc.Tags()["tensors"] if tag == "sample/text_summary"
           for e in acc.Tensors(tag)}
  return scalars, texts


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_every_logged_number_and_every_sample_is_in_the_event_files(tmp_path):
  book = write_text(tmp_path / "book.txt", TINY_TEXT * 6)
  workdir = str(tmp_path / "run")
  cfg = small_config(book, tensorboard=True, val_fraction=0.2, eval_every=40, report_every=20,
                     num_steps=80)
  trainer.train(cfg.replace(num_steps=40), workdir)
  trainer.train(cfg, workdir)  # resumed: one curve, no step written twice
  scalars, texts = _read(workdir)
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == [20, 40, 60, 80]
  names = {"loss/train_per_char": "loss_per_char", "loss/smooth_per_char": "smooth_loss_per_char",
           "optim/learning_rate": "learning_rate", "speed/chars_per_s": "chars_per_s",
           "loss/heldout_per_char": "val_loss_per_char", "bits/heldout": "val_bpc"}
  assert set(scalars) == set(names)
  for tag, key in names.items():
    want = [(r["step"], r[key]) for r in rows if key in r]
    assert [s for s, _ in scalars[tag]] == [s for s, _ in want], tag
    for (_, got), (_, value) in zip(scalars[tag], want):
      assert got == pytest.approx(value, rel=1e-6), tag
  assert [s for s, _ in scalars["bits/heldout"]] == [40, 80]
  samples = open(os.path.join(workdir, "samples.txt"), encoding="utf-8").read()
  assert sorted(texts) == [0, 20, 40, 60, 80]  # samples.txt's "before the first update" too
  for text in texts.values():
    assert text.startswith("```\n") and text[4:-4] in samples


def test_a_resumed_run_drops_what_an_interrupted_session_wrote_after_its_checkpoint(tmp_path):
  book = write_text(tmp_path / "book.txt", TINY_TEXT * 6)
  workdir = str(tmp_path / "run")
  cfg = small_config(book, tensorboard=True, checkpoint_every=20, num_steps=60)
  trainer.train(cfg.replace(num_steps=40), workdir)
  # As if the session had been killed after writing the events of step 40 but before saving
  # its checkpoint: the run goes on from step 20.
  from jax_charrnn import checkpoint  # pylint: disable=g-import-not-at-top
  assert checkpoint.all_steps(workdir) == [20, 40]
  checkpoint.quarantine(workdir, 40, "gone")
  trainer.train(cfg, workdir)
  scalars, _ = _read(workdir)
  steps = [s for s, _ in scalars["loss/train_per_char"]]
  assert steps == [20, 40, 60], steps  # 40 written once, by the resumed session


def test_without_the_extra_a_paragraph_says_how_to_install_it(tmp_path, monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real = builtins.__import__

  def no_tensorboardx(name, *a, **kw):
    if name == "tensorboardX":
      raise ImportError(name)
    return real(name, *a, **kw)

  monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
  from jax_charrnn import errors  # pylint: disable=g-import-not-at-top
  book = write_text(tmp_path / "book.txt", TINY_TEXT * 6)
  with pytest.raises(errors.UserError, match=r"pip install -e '\.\[tensorboard\]'"):
    trainer.train(small_config(book, tensorboard=True), str(tmp_path / "run"))
