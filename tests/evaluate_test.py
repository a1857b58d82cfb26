"""Held-out scoring and the export, against an independent NumPy forward of the exported arrays.

The reference below is written from PyTorch's documented nn.RNN equations
(h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), x_t one-hot, a zero
vector for a character outside the vocabulary) and nn.Linear, in float64,
reading only model.npz: not from the package.
"""

import json
import math
import os

import jax
import numpy as np
import pytest

from jax_charrnn import data, export, runfiles, score, trainer, walk
from jax_charrnn.config import TrainConfig

from helpers import TINY_TEXT, assert_user_error, load_run, run_module

BOOK = TINY_TEXT * 6 + "the end of the quick story.\n" * 10


def numpy_bits_per_char(npz: dict, text: str) -> tuple[float, int]:
  """PyTorch's documented equations on model.npz: (bits/char over known targets, predictions)."""
  vocab = [str(ch) for ch in npz["vocab"]]
  index = {ch: i for i, ch in enumerate(vocab)}
  K, layers = len(vocab), sum(1 for k in npz if k.startswith("rnn.weight_ih_l"))
  w = {k: np.asarray(v, np.float64) for k, v in npz.items() if k.startswith(("rnn.", "decoder."))}
  H = w["rnn.weight_hh_l0"].shape[0]
  h = [np.zeros(H) for _ in range(layers)]
  total, count = 0.0, 0
  for t in range(len(text) - 1):
    x = np.zeros(K)
    if text[t] in index:
      x[index[text[t]]] = 1.0
    for k in range(layers):
      h[k] = np.tanh(x @ w[f"rnn.weight_ih_l{k}"].T + w[f"rnn.bias_ih_l{k}"]
                     + h[k] @ w[f"rnn.weight_hh_l{k}"].T + w[f"rnn.bias_hh_l{k}"])
      x = h[k]
    logits = x @ w["decoder.weight"].T + w["decoder.bias"]
    target = index.get(text[t + 1])
    if target is None:
      continue
    m = logits.max()
    total += (m + math.log(np.exp(logits - m).sum())) - logits[target]
    count += 1
  return total / count / math.log(2), count


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A two-layer run with a held-out tenth, best kept by held-out score."""
  root = tmp_path_factory.mktemp("eval")
  book = root / "book.txt"
  book.write_text(BOOK, encoding="utf-8")
  cfg = TrainConfig(data_path=str(book), hidden_size=16, num_layers=2, seq_length=10,
                    num_steps=240, steps_per_call=40, log_every=40, eval_every=80,
                    sample_every=0, report_every=0, report_gradcheck_entries=0,
                    sample_length=10, passage_length=20, val_fraction=0.1,
                    best_metric="val_bpc", init_sigma=0.1)
  summary = trainer.train(cfg, str(root / "run"))
  return str(root / "run"), str(book), summary


def test_the_trainer_scores_the_held_out_tail_and_keeps_the_best(run):
  workdir, book, summary = run
  rows = runfiles.read_metrics(workdir)
  scored = [r for r in rows if "val_bpc" in r]
  assert [r["step"] for r in scored] == [80, 160, 240]
  for r in scored:
    assert r["val_bpc"] == pytest.approx(r["val_loss_per_char"] / math.log(2))
  best = min(scored, key=lambda r: r["val_bpc"])
  assert summary.record.best_step == best["step"] and summary.record.best_loss == pytest.approx(
      best["val_bpc"], rel=1e-6)
  # The best copy is the parameters that scored it.
  net, params, vocab, *_ = load_run(workdir, "best")
  tail = walk.corpus_of(summary_config(workdir)).val_ids.read()
  assert score.score_ids(net, params, tail).bits_per_char == pytest.approx(best["val_bpc"],
                                                                               rel=1e-5)
  md = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  assert "Held-out text (the last 10% of the text" in md and "Best held-out score" in md


def summary_config(workdir):
  from jax_charrnn import checkpoint  # pylint: disable=g-import-not-at-top
  return TrainConfig.from_dict(checkpoint.read_meta(workdir)[1]["config"])


def test_score_equals_numpy_forward_of_the_export_on_the_held_out_tail_and_another_file(
    run, tmp_path):
  workdir, book, _ = run
  net, params, vocab, *_ = load_run(workdir, "latest")
  arrays = export.state_dict(net, params, vocab)
  np.savez(tmp_path / "model.npz", **arrays)
  npz = dict(np.load(tmp_path / "model.npz"))
  assert str(npz["cell"]) == "rnn" and npz["rnn.weight_ih_l0"].shape == (16, vocab.size)
  assert npz["rnn.weight_ih_l1"].shape == (16, 16) and npz["decoder.weight"].shape == (vocab.size,
                                                                                       16)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    tail = BOOK[data.split_point(len(BOOK), 0.1):]
    got = score.score_ids(net, p64, vocab.encode(tail))
    want, count = numpy_bits_per_char(npz, tail)
    assert got.predictions == count and abs(got.bits_per_char - want) < 1e-5
    other = "The quick brown fox! Zebras jump over lazy dogs; harry looked at RON.\n" * 3
    ids, unknown = vocab.encode_known(other)
    got = score.score_ids(net, p64, ids, unknown)
    want, count = numpy_bits_per_char(npz, other)
  assert set(unknown) >= {"T", "!", "Z", ";", "R", "O", "N"}
  assert got.predictions == count and got.skipped == sum(unknown.values()) - (
      other[0] not in vocab.chars)
  assert abs(got.bits_per_char - want) < 1e-5


@pytest.mark.slow
def test_evaluate_and_export_command_lines(run, tmp_path):
  workdir, book, _ = run
  r = run_module("jax_charrnn.evaluate", f"--workdir={workdir}", "--which=latest", "--json")
  assert r.returncode == 0, r.stderr[-2000:]
  got = json.loads(r.stdout)
  r = run_module("jax_charrnn.export", f"--workdir={workdir}", "--which=latest",
                 f"--out={tmp_path / 'm.npz'}")
  assert r.returncode == 0, r.stderr[-2000:]
  want, count = numpy_bits_per_char(dict(np.load(tmp_path / "m.npz")),
                                    BOOK[data.split_point(len(BOOK), 0.1):])
  assert got["predictions"] == count and abs(got["bits_per_char"] - want) < 1e-5
  assert got["perplexity"] == pytest.approx(math.exp(got["nats_per_char"]))
  other = tmp_path / "other.txt"
  other.write_text("Harry looked at Ron!\n" * 5, encoding="utf-8")
  r = run_module("jax_charrnn.evaluate", f"--workdir={workdir}", f"--data_path={other}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "bits/char" in r.stdout and "perplexity" in r.stdout
  assert "skipped" in r.stdout and "'H' (5)" in r.stdout and "'!' (5)" in r.stdout
  alien = tmp_path / "alien.txt"
  alien.write_text("€€€€", encoding="utf-8")
  assert_user_error(run_module("jax_charrnn.evaluate", f"--workdir={workdir}",
                               f"--data_path={alien}"), "Nothing to score", "'€'")
  # A mistake is one paragraph (a missing workdir and --val_fraction=1 are the same
  # paragraphs as in cli_test and config_test).
  assert_user_error(run_module("jax_charrnn.export", f"--workdir={workdir}",
                               f"--out={tmp_path / 'missing_dir' / 'm.npz'}"), "Cannot write")


def test_export_loads_into_pytorch_and_runs_to_the_same_outputs(run):
  torch = pytest.importorskip("torch")
  workdir, _, _ = run
  net, params, vocab, *_ = load_run(workdir, "latest")
  npz = export.state_dict(net, params, vocab)
  K, H = vocab.size, net.hidden_size
  rnn = torch.nn.RNN(K, H, num_layers=2, nonlinearity="tanh")
  decoder = torch.nn.Linear(H, K)
  rnn.load_state_dict({k[4:]: torch.tensor(v) for k, v in npz.items() if k.startswith("rnn.")})
  decoder.load_state_dict({k[8:]: torch.tensor(v) for k, v in npz.items()
                           if k.startswith("decoder.")})
  ids = vocab.encode("the quick brown fox")
  x = torch.nn.functional.one_hot(torch.from_numpy(ids).long(), K).float()[:, None, :]
  with torch.no_grad():
    hs, _ = rnn(x)
    want = decoder(hs[:, 0]).numpy()
  got, _ = net.forward(params, net.zero_carry(), ids)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)

