"""The Write panel of visualize's page: the network's step in JavaScript against the package's
(greedy text equal to sample's for an LSTM of 2 layers, a GRU, the RNN and a byte-level run),
the compact weight encodings against their formulas and against the page, sampling against the
distribution, the prime and bad settings handled as sample handles them, Stop, and a wrong
network caught."""

import base64
import dataclasses
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, data, generate, saved, trainer, visualize, webnet
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.errors import UserError
from jax_charrnn.model import Model

from helpers import REPO, TINY_TEXT, browse, run_module, small_config, write_text

# A no-break space and a zero-width space: characters Python's repr() escapes (sample's message
# about a prime names the vocabulary so).
BOOK = TINY_TEXT * 6 + "it's a\xa0long way,\u200b and the dog ran.\n" * 8
LENGTH = 300


def _train(root, name, text=BOOK, **overrides):
  book = write_text(root / f"{name}.txt", text)
  config = dict(hidden_size=24, num_steps=120, val_fraction=0.2, init_dist="pytorch",
                optimizer="adam", learning_rate=0.01, loss_reduction="mean")
  config.update(overrides)
  trainer.train(small_config(book, **config), str(root / name))
  return str(root / name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Trained runs of each cell (float32): an LSTM of 2 layers, a GRU of 2, the RNN, bytes."""
  root = tmp_path_factory.mktemp("write")
  return {"lstm": _train(root, "lstm", cell="lstm", num_layers=2),
          "gru": _train(root, "gru", cell="gru", num_layers=2),
          "rnn": _train(root, "rnn", cell="rnn"),
          "byte": _train(root, "byte", text="café naïve — über straße, ok. " * 60,
                         cell="lstm", unit="byte")}


def _page(workdir, tmp_path, name="page.html", **kw):
  w = visualize.write_page(saved.load(workdir), out=str(tmp_path / name), **kw)
  return w, json.loads(open(w.numbers, encoding="utf-8").read())


def _greedy(run, prime, length=LENGTH, params=None):
  """sample --temperature=0's text, as its library call draws it (the run's dtype)."""
  text = generate.generate(run.net, run.params if params is None else params, run.vocab,
                           run.carry, run.x0, length, jax.random.key(0), 0.0,
                           prime=run.vocab.symbols_of(prime))[0]
  return run.vocab.show(text)


def _generate(page, prime, length, temperature=0, **options):
  return page.evaluate("([p, n, t, o]) => window.charrnn.generate(p, n, t, o)",
                       [prime, length, temperature, options])


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "byte"])
def test_the_page_writes_what_sample_writes_at_temperature_0(runs, cell, tmp_path):
  run = saved.load(runs[cell])
  w, numbers = _page(runs[cell], tmp_path)
  assert numbers["write"]["encoding"] == "exact" and "writes what sample" in w.write
  primes = ["", "h", "the ", "harry looked"] if cell != "byte" else ["", "c", "café ", "über"]
  requests, errors, texts = browse(w.page, lambda page: [_generate(page, p, LENGTH)
                                                         for p in primes])
  assert requests == [] and errors == []
  for prime, text in zip(primes, texts):
    assert text == _greedy(run, prime), (cell, prime)
  if cell == "lstm":  # and the command line's own output, newline and all
    r = run_module("jax_charrnn.sample", f"--workdir={runs[cell]}", "--prime=the ",
                   f"--length={LENGTH}", "--temperature=0")
    assert r.returncode == 0 and r.stdout == texts[2] + "\n"


@pytest.mark.slow
def test_a_wrong_network_in_the_page_is_caught(runs, tmp_path):
  """The comparison above fails for a page whose LSTM has its input and forget gates swapped."""
  run = saved.load(runs["lstm"])
  w, numbers = _page(runs["lstm"], tmp_path)
  net = webnet.network(run, "exact")
  H = run.net.hidden_size
  for layer in net["layers"]:
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
      a = layer[name]
      v = np.frombuffer(base64.b64decode(a["data"]), np.float32).reshape(a["shape"])
      v = np.concatenate([v[H:2 * H], v[:H], v[2 * H:]])
      layer[name] = webnet.encode(v, "exact")
  wrong = tmp_path / "wrong.html"
  wrong.write_text(visualize.render(numbers, net), encoding="utf-8")
  _, errors, text = browse(str(wrong), lambda page: _generate(page, "the ", LENGTH))
  assert errors == [] and text != _greedy(run, "the ")


def test_the_encodings_are_their_formulas_and_auto_keeps_the_page_small(monkeypatch):
  w = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
  w[3] = 0  # a zero row: scale 0, no division by it
  q, s = webnet.int8_rows(w)
  assert q.dtype == np.int8 and np.abs(q).max() == 127 and s[3] == 0 and (q[3] == 0).all()
  assert np.allclose(s[:3], np.abs(w[:3]).max(axis=1) / 127)
  back = webnet.round_trip(w, "int8")
  assert np.all(np.abs(back - w) <= s[:, None] / 2 * (1 + 1e-6))
  half = webnet.round_trip(w, "float16")
  assert np.all(np.abs(half - w) <= np.abs(w) * 2.0 ** -11 + 2.0 ** -25)
  assert webnet.round_trip(w, "exact") is w
  net = Model(cells.get("lstm"), vocab_size=65, hidden_size=512, num_layers=2)
  params = jax.eval_shape(lambda: net.init(jax.random.key(0), InitSpec()))
  params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), params)
  assert webnet.choose(params, "auto") == "int8"  # shakespeare_best's network: 13 MB exact
  weights = 2048 * 65 + 3 * 2048 * 512 + 65 * 512  # W_ih, W_hh of 2 layers; V
  assert webnet.weight_bytes(params, "int8") == weights + 4 * (4 * 2048 + 65)  # + a scale a row
  assert webnet.weight_bytes(params, "float16") == 2 * weights
  monkeypatch.setattr(webnet, "WEIGHT_BYTES", webnet.weight_bytes(params, "float16"))
  assert webnet.choose(params, "auto") == "float16"
  monkeypatch.setattr(webnet, "WEIGHT_BYTES", webnet.weight_bytes(params, "exact"))
  assert webnet.choose(params, "auto") == "exact" and webnet.choose(params, "int8") == "int8"


@pytest.mark.slow
def test_compact_weights_are_decoded_as_webnet_says_and_their_effect_is_measured(runs, tmp_path):
  """The page's int8 and float16 networks write what the package writes with the same weights
  (webnet.page_params): the page decodes as the formulas say; and what they change is stated."""
  run = saved.load(runs["lstm"])
  pages = {e: _page(runs["lstm"], tmp_path, f"{e}.html", weights=e) for e in ("int8", "float16")}
  for encoding, (w, numbers) in pages.items():
    e = numbers["write"]
    assert e["encoding"] == encoding and abs(e["bits_page"] - e["bits_exact"]) < 0.05
    assert 0 <= e["greedy_same"] <= webnet.GREEDY_CHARS and e["bits_exact"] == w.bits_per_char
    assert f"for the first {e['greedy_same']:,} of" in w.write or "all of the first" in w.write
    assert f"{e['bits_page']:.4f} bits/char over the shown text" in w.write
    _, errors, text = browse(w.page, lambda page: _generate(page, "the ", LENGTH))
    assert errors == []
    assert text == _greedy(run, "the ", params=webnet.page_params(jax.device_get(run.params),
                                                                  encoding))
  assert os.path.getsize(pages["int8"][0].page) < os.path.getsize(pages["float16"][0].page)


@pytest.mark.slow
def test_sampling_draws_from_the_tempered_nucleus(runs, tmp_path):
  """2,000 first characters drawn with seeds 0..1999 against softmax(logits / T), and top-p's
  nucleus; a seed repeats its text."""
  run = saved.load(runs["gru"])
  net, params, vocab = run.net, run.params, run.vocab
  T = 2.0

  def tempered(prime, T):
    carry, x = generate.primed(net, params, vocab, run.carry, run.x0, prime)
    logits = np.asarray(net.step(params, carry, x)[0], np.float64)
    p = np.exp((logits - logits.max()) / T)
    return p / p.sum()

  # The prime whose tempered distribution is farthest from the plain one: a sampler that
  # ignored the temperature would be seen.
  prime = max(["the ", "harry ", "a", "looked at ", "it's a "],
              key=lambda q: np.abs(tempered(q, T) - tempered(q, 1.0)).sum())
  p, p1 = tempered(prime, T), tempered(prime, 1.0)
  order = np.argsort(-p, kind="stable")
  nucleus = order[:int(np.searchsorted(np.cumsum(p[order]), 0.7)) + 1]
  p_top = np.zeros_like(p)
  p_top[nucleus] = p[nucleus] / p[nucleus].sum()  # top-p's distribution: the nucleus, rescaled
  w, _ = _page(runs["gru"], tmp_path)

  def act(page):
    firsts = page.evaluate("""async ([p, T]) => { const out = [];
        for (let s = 0; s < 2000; s++) out.push(await window.charrnn.generate(p, 1, T, {seed: s}));
        return out; }""", [prime, T])
    top = page.evaluate("""async ([p, T]) => { const out = [];
        for (let s = 0; s < 2000; s++) out.push(await window.charrnn.generate(p, 1, T, {seed: s,
            topP: 0.7}));
        return out; }""", [prime, T])
    again = [_generate(page, prime, 80, 1.0, seed=7) for _ in range(2)]
    return firsts, top, again, _generate(page, prime, 80, 1.0, seed=8)

  _, errors, (firsts, top, again, other) = browse(w.page, act)
  assert errors == []
  freq = lambda texts: np.bincount([vocab.encode(t[-1])[0] for t in texts],
                                   minlength=vocab.size) / len(texts)
  tv = lambda f, q: 0.5 * np.abs(f - q).sum()
  assert tv(freq(firsts), p) < 0.05 and tv(freq(firsts), p1) > 0.1  # tempered, not plain
  assert tv(freq(top), p_top) < 0.05 and tv(p_top, p) > 0.1  # the nucleus, neither less nor more
  assert again[0] == again[1] != other


@pytest.mark.slow
def test_the_panel_writes_handles_bad_settings_and_stops(runs, tmp_path):
  run = saved.load(runs["lstm"])
  w, _ = _page(runs["lstm"], tmp_path)
  missing = "the Zebra€"
  with pytest.raises(UserError) as raised:
    generate.primed(run.net, run.params, run.vocab, run.carry, run.x0, missing)

  def write(page, prime, length, temperature, wait=True):
    page.fill("#prime", prime)
    page.fill("#length", str(length))
    page.fill("#temperature", str(temperature))
    page.click("#write")
    if wait:
      page.wait_for_function("/^(Wrote|The|top|No)/.test("
                             "document.getElementById('write-message').textContent) && "
                             "document.getElementById('stop').disabled", timeout=20000)
    return page.inner_text("#write-message"), page.inner_text("#written")

  def act(page):
    out = {"written": write(page, "the ", 120, 0)}
    out["api"] = _generate(page, "the ", 120)
    out["next"] = page.locator("#next tr").count()
    page.hover("#written span[data-k='5']")
    out["tip"] = page.inner_text("#tip")
    out["missing"] = write(page, missing, 100, 0)
    out["rejected"] = page.evaluate("p => window.charrnn.generate(p, 10, 0).then(() => '', "
                                    "e => e.message)", missing)
    for name, (length, temperature) in {"zero": (0, 0), "huge": (1e9, 0), "cold": (10, -1),
                                        "text": ("", 0)}.items():
      out[name] = write(page, "the ", length, temperature)[0]
    out["empty"] = write(page, "", 50, 0)
    write(page, "the ", 100000, 1.0, wait=False)
    page.wait_for_function("document.querySelectorAll('#written span').length > 200")
    out["alive"] = page.evaluate("1 + 1")  # the tab answers while the network writes
    page.click("#stop")
    out["stopped"] = page.inner_text("#write-message")
    page.wait_for_timeout(300)
    out["after_stop"] = page.locator("#written span").count()
    page.wait_for_timeout(300)
    out["later"] = page.locator("#written span").count()
    # A new Write while one writes: only the new text, and its own predictions on hover.
    write(page, "the ", 100000, 1.0, wait=False)
    page.wait_for_function("document.querySelectorAll('#written span').length > 200")
    out["again"] = write(page, "the ", 60, 0)
    page.wait_for_timeout(300)
    out["again_spans"] = page.locator("#written span").count()
    page.hover("#written span[data-k='59']")
    out["again_tip"] = page.inner_text("#tip")
    # Bad settings while one writes: said, the writing stopped, nothing left shown.
    write(page, "the ", 100000, 1.0, wait=False)
    page.wait_for_function("document.querySelectorAll('#written span').length > 200")
    out["bad_during"] = write(page, "the ", 0, 0)
    page.wait_for_timeout(300)
    out["bad_after"] = page.inner_text("#written"), page.is_disabled("#stop")
    return out

  requests, errors, out = browse(w.page, act)
  assert requests == [] and errors == []
  message, text = out["written"]
  assert re.fullmatch(r"Wrote 120 characters in [\d.]+ s\.", message)
  assert text == out["api"] == _greedy(run, "the ", 120)
  assert out["next"] == 1 + 5 and out["tip"].startswith("the model's p there:")
  assert out["missing"] == (str(raised.value), "") and out["rejected"] == str(raised.value)
  assert "from 1 to 100,000; got 0." in out["zero"] and "got 1000000000." in out["huge"]
  assert "temperature must be 0" in out["cold"] and "got NaN" in out["text"]
  message, text = out["empty"]
  assert message.startswith("Wrote 50") and text == _greedy(run, "", 50)
  assert out["alive"] == 2 and out["stopped"] == "Stopped."
  assert out["after_stop"] == out["later"] < 100000
  assert out["again"][1] == _greedy(run, "the ", 60) and out["again_spans"] == 1 + 60
  probs = _probabilities_after(run, out["again"][1][:-1])
  best = max(range(len(probs)), key=probs.__getitem__)
  assert out["again_tip"].splitlines()[1].split()[1] == f"{100 * probs[best]:.1f}%"
  assert out["bad_during"][0].startswith("The length") and out["bad_after"] == ("", True)


def _probabilities_after(run, text):
  """The model's next-character probabilities after reading `text` from the run's state."""
  carry, x = generate.primed(run.net, run.params, run.vocab, run.carry, run.x0, text)
  return np.asarray(jax.nn.softmax(run.net.step(run.params, carry, x)[0])).tolist()


def test_bytes_are_shown_as_sample_shows_them(tmp_path):
  """The page's UTF-8 decoder (\\xNN where bytes do not decode) against Python's."""
  cases = [b"plain", "café — über".encode(), b"\xe2\x82", b"\xe2\x82a", b"\xc3", b"\xff\xfe",
           b"\xed\xa0\x80", b"\xf0\x9f\x98\x80!", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80"]
  page = tmp_path / "p.html"
  page.write_text(visualize.render({"chars": [], "write": {"why": "none"}}, None),
                  encoding="utf-8")

  def act(p):
    return [p.evaluate("b => window.charrnn.showBytes(b)", list(c)) for c in cases]

  _, _, shown = browse(str(page), act)
  assert shown == [c.decode("utf-8", "backslashreplace") for c in cases]


@pytest.mark.slow
def test_a_2x512_lstm_page_stays_under_10_mb(runs, tmp_path):
  """shakespeare_best's shape (fresh weights: the size does not depend on their values)."""
  run = saved.load(runs["lstm"])
  shakespeare = os.path.join(REPO, "data", "tinyshakespeare.txt")
  vocab = data.Vocab.from_text(data.load_text(shakespeare))
  net = dataclasses.replace(run.net, hidden_size=512, vocab_size=vocab.size)
  params = net.init(jax.random.key(0), InitSpec(dist="pytorch"))
  big = dataclasses.replace(run, net=net, params=params, vocab=vocab, x0=0,
                            carry=net.zero_carry((), jnp.float32))
  with jax.enable_x64(True):
    w = visualize.write_page(big, data_path=shakespeare, out=str(tmp_path / "big.html"))
  assert vocab.size == 65 and w.chars == 1694
  assert os.path.getsize(w.page) < 10e6 and "int8" in w.write
  assert "fit the page's" in w.what and "--max_chars reads more" in w.what


def test_the_command_line_takes_weights_none(runs, tmp_path):
  out = tmp_path / "p.html"
  r = run_module("jax_charrnn.visualize", f"--workdir={runs['rnn']}", f"--out={out}",
                 "--weights=none")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Write panel: not written (--weights=none)." in r.stdout
  html = out.read_text(encoding="utf-8")
  assert '<script id="net" type="application/json">null</script>' in html
  assert math.isfinite(json.loads((tmp_path / "p.json").read_text())["bits_per_char"])
