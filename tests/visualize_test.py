"""The page of a trained network: its numbers against evaluate and the network's own steps, the
text's properties and the proposals, errors, and the page itself in a real browser."""

import base64
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, saved, trainer, visualize, walk
from jax_charrnn import score as score_lib
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model

from helpers import (REPO, TINY_TEXT, assert_user_error, browse, load_run, run_module,
                     small_config, write_text)

BOOK = TINY_TEXT * 6 + 'He said "hello (there) world" and left.\n' * 8


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
  """Two LSTM layers, dropout, two streams, the last fifth held out (float32)."""
  root = tmp_path_factory.mktemp("vis")
  book = write_text(root / "book.txt", BOOK)
  trainer.train(small_config(book, cell="lstm", num_layers=2, dropout=0.2, batch_size=2,
                             val_fraction=0.2, init_dist="pytorch", optimizer="adam",
                             learning_rate=0.01, loss_reduction="mean"), str(root / "run"))
  return str(root / "run"), book


def test_a_run_with_visualize_chars_writes_the_page_and_its_report_links_it(tmp_path):
  book = write_text(tmp_path / "book.txt", BOOK)
  workdir = str(tmp_path / "run")
  trainer.train(small_config(book, val_fraction=0.2, visualize_chars=150), workdir)
  page = os.path.join(workdir, "visualize.html")
  numbers = _read(os.path.join(workdir, "visualize.json"))
  assert os.path.exists(page) and numbers["text"]["chars"] == 150
  report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  assert "[visualize.html](visualize.html) (150 characters of the held-out tail" in report
  # --overwrite starts afresh: an earlier run's page goes with its other outputs.
  trainer.train(small_config(book, num_steps=20), workdir, overwrite=True)
  assert not os.path.exists(page) and "[visualize.html]" not in open(
      os.path.join(workdir, "report.md"), encoding="utf-8").read()


def _read(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _by_steps(net, params, ids):
  """The network one character at a time (`Model.step`, as sampling runs it, not the chunked
  forward): every layer's carry and the logits after each character."""
  step = jax.jit(net.step)
  carry, carries, logits = net.zero_carry((), params.V.dtype), [], []
  for x in ids:
    out, carry = step(params, carry, jnp.int32(x))
    carries.append(jax.device_get(carry))
    logits.append(np.asarray(out))
  return carries, np.stack(logits)


def _unit(net, carry, layer, kind):
  c = carry[layer - 1]
  return np.asarray(c.c if kind == "c" else net.cell.output(c))


def test_bits_average_to_evaluate_and_units_equal_the_network_step_by_step(lstm_run, tmp_path):
  workdir, book = lstm_run
  with jax.enable_x64(True):  # as the command line reads (and evaluate scores): float64
    w = visualize.write_page(saved.load(workdir), out=str(tmp_path / "page.html"))
    net, params, vocab, *_ = load_run(workdir, "best")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    tail = walk.corpus_of(small_config(book, val_fraction=0.2)).val_ids.read()
    score = score_lib.score_ids(net, params, tail)
    carries, logits = _by_steps(net, params, tail)
  assert w.page == str(tmp_path / "page.html") and w.numbers == str(tmp_path / "page.json")
  d = _read(w.numbers)
  N = len(tail)
  assert d["chars"] == list(vocab.decode(tail)) and w.chars == N == d["text"]["chars"]
  assert "held-out tail" in d["text"]["what"] and "all" in d["text"]["what"]
  bits = [b for b in d["bits"] if b is not None]
  assert d["bits"][0] is None and len(bits) == N - 1 == score.predictions
  assert abs(np.mean(bits) - score.bits_per_char) < 1e-4
  assert d["bits_per_char"] == pytest.approx(score.bits_per_char, abs=1e-12)
  # Every character's bits and top predictions: the softmax of the step-by-step logits before it.
  log_p = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), axis=-1))
  want_bits = -log_p[np.arange(N - 1), tail[1:]] / math.log(2)
  np.testing.assert_allclose(d["bits"][1:], want_bits, atol=6e-5)
  for t in (1, 2, N // 2, N - 1):
    order = np.argsort(-log_p[t - 1])[:visualize.TOP]
    assert d["top"]["ids"][t] == order.tolist()
    np.testing.assert_allclose(d["top"]["p"][t], np.exp(log_p[t - 1][order]), atol=6e-5)
  # The proposed units' exact values, and every unit's page byte, at every step.
  assert d["units"]["kinds"] == ["c", "h"] and len(d["units"]["layers"]) == 2
  assert d["values"] and len(d["values"]) <= len(d["proposals"])
  for key, values in d["values"].items():
    layer, kind, index = key.split()
    want = [_unit(net, c, int(layer), kind)[int(index)] for c in carries]
    np.testing.assert_allclose(values, want, atol=6e-6, err_msg=key)
  for k, layer in enumerate(d["units"]["layers"]):
    for kind, b64 in layer.items():
      q = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(16, N)
      want = visualize.shown(np.stack([_unit(net, c, k + 1, kind) for c in carries]), kind)
      assert np.abs(q.T / 127.5 - 1.0 - want).max() <= 0.5 / 127.5 + 1e-9, (k, kind)
  # The saturation of every gate: the step-by-step gates counted by hand.
  assert [sorted(s["gates"]) for s in d["saturation"]] == [["f", "i", "o"]] * 2
  with jax.enable_x64(True):
    _, _, layers = net.trace(params, net.zero_carry((), jnp.float64), jnp.asarray(tail))
  for s, layer in zip(d["saturation"], layers):
    for g, v in layer["gates"].items():
      np.testing.assert_allclose(s["gates"][g]["low"], np.mean(np.asarray(v) < 0.1, 0), atol=6e-5)
      np.testing.assert_allclose(s["gates"][g]["high"], np.mean(np.asarray(v) > 0.9, 0),
                                 atol=6e-5)
  # The page holds the same numbers.
  html = open(w.page, encoding="utf-8").read()
  blob = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
  assert json.loads(blob.group(1)) == d


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_trace_reads_across_chunks_as_one_pass_and_counts_saturated_gates(cell, monkeypatch):
  monkeypatch.setattr(visualize, "CHUNK", 7)  # 6 chunks, the carry passed on, the last padded
  monkeypatch.setattr(score_lib, "CHUNK", 7)
  ids = np.random.default_rng(0).integers(0, 9, 40).astype(np.int32)
  ids[[5, 17]] = 9  # characters outside the vocabulary: read as zeros, not scored
  with jax.enable_x64(True):
    net = Model(cells.get(cell), vocab_size=9, hidden_size=6, num_layers=2)
    p = net.init(jax.random.key(1), InitSpec(sigma=2.0), jnp.float64)  # gates that saturate
    tr = visualize.trace_text(net, p, ids, k=3)
    logits, _, layers = net.trace(p, net.zero_carry((), jnp.float64), jnp.asarray(ids))  # 1 pass
    score = score_lib.score_ids(net, p, ids)
    log_p = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    layers = jax.device_get(layers)
  want = np.full(40, np.nan)
  for t in range(1, 40):
    if ids[t] < 9:
      want[t] = -log_p[t - 1, ids[t]] / math.log(2)
  np.testing.assert_allclose(tr.bits, want, rtol=1e-12)
  assert np.isnan(tr.bits[[0, 5, 17]]).all()
  np.testing.assert_array_equal(tr.top_ids[1:], np.argsort(-log_p, axis=-1)[:-1, :3])
  np.testing.assert_allclose(tr.top_p[1:], np.exp(np.sort(log_p, axis=-1)[:-1, ::-1][:, :3]),
                             rtol=1e-12)
  for got, layer in zip(tr.units, layers):
    assert set(got) == set(layer["units"])
    for kind in got:
      np.testing.assert_allclose(got[kind], layer["units"][kind], rtol=1e-12, atol=1e-14)
  for got, layer in zip(tr.saturation, layers):
    assert set(got) == set(layer["gates"])
    for g, v in layer["gates"].items():
      v = np.asarray(v)
      np.testing.assert_allclose(got[g][0], np.mean(v < 0.1, axis=0))
      np.testing.assert_allclose(got[g][1], np.mean(v > 0.9, axis=0))
  if cell != "rnn":  # the counts are not trivially zero or one
    frac = np.concatenate([np.concatenate(f) for layer in tr.saturation for f in layer.values()])
    assert 0 < frac.mean() < 1 and np.any((frac > 0) & (frac < 1))
  # evaluate's score of the same ids is the mean of the scored bits.
  assert np.nanmean(tr.bits) == pytest.approx(score.bits_per_char, rel=1e-12)


def test_text_properties_by_hand():
  text = 'Ab "cd (e)"\nx.'
  p = visualize.text_properties(text)
  assert set(p) == set(visualize.PROPERTIES)
  col = lambda name: "".join(str(int(v)) for v in p[name])
  # After reading each of   A b _ " c d _ ( e ) " ↵ x .   (a closing mark ends the span)
  assert col("inside quotes") == "00011111110000"
  assert col("inside brackets") == "00000001100000"
  assert p["position in the line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2]
  assert p["position in the word"].tolist() == [1, 2, 0, 0, 1, 2, 0, 0, 1, 0, 0, 0, 1, 0]
  assert col("start of a word") == "10001000100010"
  assert col("inside a word") == "11001100100010"
  assert col("end of a word next") == "01000100100010"
  assert col("newline") == "00000000000100"
  assert col("start of a line") == "00000000000010"
  assert col("space") == "00100010000000"
  assert col("vowel") == "10000000100000"
  assert col("upper case") == "10000000000000"
  assert col("punctuation") == "00010001011001"
  curly = visualize.text_properties("a “b” c")["inside quotes"]
  assert curly.tolist() == [0, 0, 1, 1, 0, 0, 0]


def test_correlations_are_pearsons_r_and_the_proposal_finds_a_planted_unit():
  rng = np.random.default_rng(0)
  values = rng.standard_normal((200, 5))
  prop = (rng.random(200) < 0.3).astype(float)
  values[:, 3] = prop * 2.0 - 0.5 + 0.1 * rng.standard_normal(200)  # follows the property
  values[:, 4] = 1.0  # constant: r = 0, not NaN
  r = visualize.correlations(values, prop)
  for j in range(4):
    assert r[j] == pytest.approx(np.corrcoef(values[:, j], prop)[0, 1], abs=1e-12)
  assert r[4] == 0.0 and r[3] > 0.95
  units = [{"h": values[:, :2]}, {"c": -values[:, 2:], "h": values[:, :1]}]
  props = {"planted": prop, "never": np.zeros(200), "noise": rng.random(200)}
  got = visualize.propose(units, props, per_property=2)
  assert [g["property"] for g in got] == ["planted", "noise"]  # constant ones are left out
  best = got[0]["units"][0]
  assert (best["layer"], best["kind"], best["index"]) == (2, "c", 1)  # column 3, negated
  assert best["r"] == pytest.approx(-r[3], abs=1e-4) and len(got[0]["units"]) == 2


def test_the_page_embeds_text_that_looks_like_html_safely():
  numbers = {"chars": list('</script><script>alert(1)</script> <!-- "'), "x": "</SCRIPT>"}
  net = {"codes": [ord(c) for c in "</script>"], "x": "__DATA__ </Script>"}
  html = visualize.render(numbers, net)
  assert html.lower().count("</script>") == 4 and "alert(1)</script>" not in html  # its own 4
  blob = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
  assert json.loads(blob.group(1)) == numbers
  blob = re.search(r'<script id="net" type="application/json">(.*?)</script>', html, re.S)
  assert json.loads(blob.group(1)) == net  # a mark inside the numbers is left as it is


def test_the_template_ships_with_the_package():
  import configparser  # pylint: disable=g-import-not-at-top
  import fnmatch  # pylint: disable=g-import-not-at-top
  cfg = configparser.ConfigParser()
  cfg.read(os.path.join(REPO, "setup.cfg"))
  patterns = re.split(r"[,\s]+", cfg["options.package_data"]["jax_charrnn"].strip())
  for name in (visualize.PAGE, visualize.WRITE_JS):  # the template and the Write panel's script
    assert any(fnmatch.fnmatch(name, pat) for pat in patterns)
    assert os.path.exists(os.path.join(os.path.dirname(visualize.__file__), name))


def test_mistakes_are_paragraphs(lstm_run, tmp_path):
  workdir, _ = lstm_run
  alien = write_text(tmp_path / "alien.txt", "€€€€")
  with pytest.raises(UserError, match="Nothing to score"):
    visualize.write_page(saved.load(workdir), data_path=alien, out=str(tmp_path / "a.html"))
  with pytest.raises(UserError, match="too short"):
    visualize.write_page(saved.load(workdir), data_path=write_text(tmp_path / "one.txt", "a"),
                         out=str(tmp_path / "b.html"))
  with pytest.raises(UserError, match="directory does not exist"):
    visualize.write_page(saved.load(workdir), out=str(tmp_path / "missing" / "p.html"))
  (tmp_path / "c.json").mkdir()  # the JSON's place is taken by a directory
  with pytest.raises(UserError, match="Cannot write"):
    visualize.write_page(saved.load(workdir), out=str(tmp_path / "c.html"))
  assert not os.path.exists(tmp_path / "c.html")
  with pytest.raises(UserError, match="not UTF-8|No such|Cannot read|does not exist"):
    visualize.write_page(saved.load(workdir), data_path=str(tmp_path / "nothing.txt"),
                         out=str(tmp_path / "d.html"))


def test_another_text_its_unknown_characters_and_a_bound_on_its_length(lstm_run, tmp_path):
  workdir, _ = lstm_run
  other = write_text(tmp_path / "other.txt", "Harry looked at RON!\n" * 30)
  w = visualize.write_page(saved.load(workdir), data_path=other, max_chars=100, out=str(tmp_path))
  assert w.page == str(tmp_path / "visualize.html") and w.chars == 100
  d = _read(w.numbers)
  assert "the first 100 characters of its 630 bytes" in d["text"]["what"]  # read no further
  assert d["text"]["unknown"] == {"R": 4, "O": 4, "N": 4, "!": 4}  # 4 lines and "Harry lo.."
  net, params, vocab, *_ = load_run(workdir, "best")
  ids, unknown = vocab.encode_known(("Harry looked at RON!\n" * 30)[:100])
  score = score_lib.score_ids(net, params, ids, unknown)
  scored = [b for b in d["bits"] if b is not None]
  assert len(scored) == score.predictions == 99 - 16
  assert abs(np.mean(scored) - score.bits_per_char) < 1e-4
  assert all(d["bits"][t] is None for t, ch in enumerate(d["chars"]) if ch in unknown)


def test_a_float64_gru_without_a_held_out_split_shows_the_end_of_its_text(tmp_path):
  book = write_text(tmp_path / "book.txt", BOOK)
  with jax.enable_x64(True):
    trainer.train(small_config(book, cell="gru", dtype="float64", num_steps=20),
                  str(tmp_path / "run"))
    w = visualize.write_page(saved.load(str(tmp_path / "run"), "latest"), max_chars=300)
    net, params, vocab, *_ = load_run(str(tmp_path / "run"), "latest")
    assert params.V.dtype == jnp.float64
    score = score_lib.score_ids(net, params, vocab.encode(BOOK[-300:]))
  d = _read(w.numbers)
  assert d["chars"] == list(BOOK[-300:]) and "which the run trained on" in d["text"]["what"]
  assert "no held-out split" in d["text"]["what"] and d["model"]["cell"] == "gru"
  assert abs(np.nanmean(np.array(d["bits"], float)) - score.bits_per_char) < 1e-4
  assert d["units"]["kinds"] == ["h"] and sorted(d["saturation"][0]["gates"]) == ["r", "z"]
  assert w.page == os.path.join(str(tmp_path / "run"), "visualize.html")


def test_many_units_are_shown_over_fewer_characters(lstm_run, tmp_path, monkeypatch):
  workdir, _ = lstm_run
  monkeypatch.setattr(visualize, "UNIT_BYTES", 64 * 50)  # 64 units (2 layers of c, h): 50 chars
  w = visualize.write_page(saved.load(workdir), out=str(tmp_path / "p.html"))
  assert w.chars == 50 and "at most 50 characters fit" in w.what


@pytest.mark.slow
def test_the_command_line_agrees_with_evaluate(lstm_run, tmp_path):
  workdir, _ = lstm_run
  out = tmp_path / "page.html"
  r = run_module("jax_charrnn.visualize", f"--workdir={workdir}", f"--out={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert re.search(r"Read [\d,]+ characters of the held-out tail .* in [\d.]+ s", r.stdout)
  assert f"Wrote {out}" in r.stdout and "Units that follow the text" in r.stdout
  e = run_module("jax_charrnn.evaluate", f"--workdir={workdir}")
  printed = float(re.search(r"bits/char\s+([\d.]+)", e.stdout).group(1))
  bits = [b for b in _read(tmp_path / "page.json")["bits"] if b is not None]
  assert abs(np.mean(bits) - printed) < 1e-4
  assert_user_error(run_module("jax_charrnn.visualize", f"--workdir={tmp_path / 'nope'}"),
                    "No checkpoint")
  assert_user_error(run_module("jax_charrnn.visualize", f"--workdir={workdir}",
                               "--max_chars=1"), "max_chars")


# ---- the page in a real browser ----

GLYPH = {"\n": "↵", " ": "␣", "\t": "⇥"}


@pytest.mark.slow
def test_the_page_draws_coloured_text_and_shows_predictions_on_hover(lstm_run, tmp_path):
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  workdir, _ = lstm_run
  w = visualize.write_page(saved.load(workdir), out=str(tmp_path / "page.html"))
  d = _read(w.numbers)
  t = next(t for t in range(3, len(d["chars"])) if d["bits"][t] is not None)

  def act(page):
    spans = page.locator("#surprisal span").count()
    page.hover(f'#surprisal span[data-t="{t}"]')
    page.wait_for_selector("#tip", state="visible", timeout=5000)
    tip = page.inner_text("#tip")
    page.select_option("#layer", "2")
    page.select_option("#kind", "h")
    page.fill("#index", "3")
    page.click("#add")
    shown = page.locator("#unit-2-h-3 span").count()
    proposals = page.locator("#proposals tr").count()
    return spans, tip, shown, proposals

  png = str(tmp_path / "shot.png")
  requests, errors, (spans, tip, shown, proposals) = browse(w.page, act, png)
  assert requests == [] and errors == []
  N = len(d["chars"])
  assert spans == N and shown == N and proposals == len(d["proposals"]) > 0
  lines = tip.splitlines()
  assert lines[0].split()[:3] == [GLYPH.get(d["chars"][t], d["chars"][t]),
                                  f"{d['bits'][t]:.2f}", "bits"]
  rows = [re.fullmatch(r"\s+(\S+)\s+([\d.]+)%", line) for line in lines[2:]]
  assert len(rows) == visualize.TOP and all(rows)
  for m, i, p in zip(rows, d["top"]["ids"][t], d["top"]["p"][t]):
    assert m.group(1) == GLYPH.get(d["vocab"][i], d["vocab"][i])
    assert abs(float(m.group(2)) - 100 * p) <= 0.051
  rgb = matplotlib.image.imread(png)[..., :3]
  red = (rgb[..., 0] - rgb[..., 2] > 0.15).sum()
  blue = (rgb[..., 2] - rgb[..., 0] > 0.15).sum()
  assert red > 2000 and blue > 200, (red, blue)


@pytest.mark.slow
def test_the_browser_check_catches_a_page_that_reaches_out_or_throws(tmp_path):
  bad = tmp_path / "bad.html"
  bad.write_text('<img src="http://example.invalid/x.png"><script>fetch("https://'
                 'example.invalid/d.json").catch(() => {}); throw new Error("boom")</script>',
                 encoding="utf-8")
  requests, errors, _ = browse(str(bad))
  assert requests == ["http://example.invalid/x.png", "https://example.invalid/d.json"]
  assert any("boom" in e for e in errors)
