"""A trained network, seen: one self-contained HTML page, and its numbers as JSON beside it.

  python -m jax_charrnn.visualize --workdir=runs/shakespeare_lstm        # the held-out tail
  python -m jax_charrnn.visualize --workdir=W --data_path=other.txt --max_chars=5000 --out=p.html

After Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015). Over a stretch of text (the run's held-out tail by default,
at most --max_chars characters), the page shows

  surprisal  each character coloured by the bits the model spent on it,
             -log2 p(x_t | x_1..x_{t-1}); hovering one shows the model's top
             predictions there
  units      the text coloured by hidden units (h; an LSTM's memory c too), any
             layer and index; for each of a few properties of the text (inside
             quotes, position in the line, ...) it proposes the units whose
             values correlate most with it (Pearson's r over the shown text)
  gates      for gated cells, each gate's saturation per layer: the fraction of
             steps it spends below 0.1 and above 0.9

The numbers come from the package's own model: the text is read once from a
zero carry passed from chunk to chunk (evaluate's reading, in float64 as
evaluate scores), through `Model.trace` (the cells' own forward), so the
per-character bits average to evaluate's bits/char. The page is the template
visualize.html with the JSON embedded, drawn by plain JavaScript: it needs no
network and opens from a file. Its Write panel runs the network itself in JavaScript
(visualize_write.js, with the weights webnet.py embeds), writing text as you watch.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.resources
import json
import math
import os
import re
import sys
import time
from typing import Any, Sequence

from jax_charrnn import errors

if __name__ == "__main__":  # before JAX loads: Ctrl-C at any moment ends the command at once
  errors.stop_at_once_on_ctrl_c()

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_charrnn import cli, data, pacing, paths, runfiles, saved, webnet
from jax_charrnn.model import Model, Params
from jax_charrnn.score import CHUNK, score_ids
# pylint: enable=wrong-import-position

MAX_CHARS = 10_000      # characters read by default
TOP = 5                 # predictions shown per character
PROPOSED = 3            # units proposed per property
UNIT_BYTES = 16 << 20   # the page's every-unit values (one byte each) stay below this, and
PAGE_BYTES = 13 << 19   # with the Write panel's weights below this (6.5 MiB; in base64 the
#                         page stays under 10 MB for a 2 x 512 LSTM with int8 weights)
MIN_UNIT_BYTES = 1 << 20  # what the units keep however large the weights
LOW, HIGH = 0.1, 0.9    # a gate below LOW or above HIGH is saturated (Karpathy et al.)
PAGE = runfiles.PAGE  # the template's name, and the page's in a workdir (+ visualize.json)
WRITE_JS = "visualize_write.js"  # the Write panel's script, inlined in the page


# ---- what the network computes over a text ----

@dataclasses.dataclass(frozen=True)
class Trace:
  """What the network computed over a text of N characters (host arrays).

  Position t is about character t: its surprisal, what the model predicted
  for it, and the units after reading it.
  """

  bits: np.ndarray        # float64 [N]: -log2 p(x_t | x_<t); NaN for t = 0 and unknown x_t
  top_ids: np.ndarray     # int32 [N, k]: the k most likely characters at t (row 0: unused)
  top_p: np.ndarray       # float64 [N, k]: their probabilities
  units: list[dict[str, np.ndarray]]    # per layer: {"h": [N, H], ("c": [N, H])}
  saturation: list[dict[str, tuple[np.ndarray, np.ndarray]]]  # per layer, per gate:
  #                       (fraction of the N steps below LOW, fraction above HIGH), [H] each


@functools.partial(jax.jit, static_argnames=("net", "k"))
def _read(net: Model, params: Params, carry: Any, inputs: jax.Array, targets: jax.Array,
          weights: jax.Array, k: int):
  """evaluate's reading of [n, chunk] chunks (in order, the carry passed on), through
  `Model.trace`: per step -log p(target), the top k and every unit; per chunk the gates'
  saturated steps (counted here, so that the gates never leave the device)."""
  dtype = params.V.dtype

  def chunk(carry, xyw):
    x, y, w = xyw
    logits, carry, layers = net.trace(params, carry, x)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
    top_log_p, top_ids = lax.top_k(log_p, k)
    w = w[:, None].astype(dtype)
    saturated = [{g: (jnp.sum(w * (v < LOW), axis=0), jnp.sum(w * (v > HIGH), axis=0))
                  for g, v in layer["gates"].items()} for layer in layers]
    units = [layer["units"] for layer in layers]
    return carry, (nll, top_ids, jnp.exp(top_log_p), units, saturated)

  return lax.scan(chunk, carry, (inputs, targets, weights))


def trace_text(net: Model, params: Params, ids: np.ndarray, k: int = TOP) -> Trace:
  """What the network computes over a text, read once from a zero carry as evaluate reads it.

  Args:
    net, params: the model (the computation runs in params' dtype).
    ids: int [N], N >= 2; an id >= K (a character outside the vocabulary) is
      read as a zero vector and its surprisal is NaN.
    k: how many of the most likely characters to keep per step.
  """
  ids = np.asarray(ids, np.int32)
  N, K = ids.size, net.vocab_size
  if N < 2:
    raise ValueError("a trace needs at least two characters (one prediction)")
  # Step t reads x_t and predicts x_{t+1}: every character is read (its units are shown),
  # the last one predicts nothing. Read in calls sized by the network's cost, as score_ids
  # reads (Ctrl-C is heard between them), the carry passed on from zero.
  budget = pacing.chars_per_call(params, 100 * CHUNK)
  size = min(CHUNK, budget)
  per_call = min(-(-N // size), max(1, budget // size))
  calls = -(-N // (per_call * size))
  n = calls * per_call
  pad = n * size - N
  targets = np.concatenate([ids[1:], [0]])
  known = np.concatenate([ids[1:] < K, [False]])
  shape = (calls, per_call, size)
  x = np.pad(ids, (0, pad)).reshape(shape)
  y = np.pad(np.where(known, targets, 0), (0, pad)).reshape(shape)
  w = np.pad(np.ones(N, bool), (0, pad)).reshape(shape)
  carry, outs = net.zero_carry((), params.V.dtype), []
  for i in range(calls):
    carry, out = _read(net, params, carry, jnp.asarray(x[i]), jnp.asarray(y[i]),
                       jnp.asarray(w[i]), min(k, K))
    outs.append(jax.device_get(out))
  nll, top_ids, top_p, units, saturated = jax.tree.map(lambda *a: np.concatenate(a), *outs)
  flat = lambda a: np.asarray(a).reshape(n * size, *np.shape(a)[2:])[:N]
  bits = np.full(N, np.nan)
  bits[1:] = np.where(known[:-1], flat(nll)[:-1].astype(np.float64) / math.log(2), np.nan)
  # Row t + 1 holds what step t predicted.
  top_ids = np.concatenate([np.zeros((1, top_ids.shape[-1]), np.int32), flat(top_ids)[:-1]])
  top_p = np.concatenate([np.zeros((1, top_p.shape[-1])), flat(top_p)[:-1]])
  return Trace(bits=bits, top_ids=top_ids, top_p=top_p.astype(np.float64),
               units=[{name: flat(v) for name, v in layer.items()} for layer in units],
               saturation=[{g: (np.sum(lo, 0) / N, np.sum(hi, 0) / N)
                            for g, (lo, hi) in layer.items()} for layer in saturated])


# ---- what the text holds, and the units that follow it ----

_OPEN, _CLOSE = "([{", ")]}"
PROPERTIES = {  # name: what it is 1 for (or counts), after reading character t
    "inside quotes": "from an opening quote (\" or “) up to the closing one",
    "inside brackets": "inside ( ), [ ] or { }",
    "position in the line": "characters since the last newline",
    "position in the word": "letters since the word began (0 outside words)",
    "start of a word": "a letter after a non-letter",
    "inside a word": "a letter",
    "end of a word next": "a letter followed by a non-letter",
    "newline": "the character just read is a newline",
    "start of a line": "the first character after a newline",
    "space": "a space",
    "vowel": "a, e, i, o, u (either case)",
    "upper case": "a capital letter",
    "punctuation": "neither a letter, a digit nor white space",
}


def text_properties(text: str) -> dict[str, np.ndarray]:
  """Each of PROPERTIES for every character of `text`: {name: float64 [N]}."""
  N = len(text)
  out = {name: np.zeros(N) for name in PROPERTIES}
  quoted, depth, column, in_word = False, 0, 0, 0
  for t, ch in enumerate(text):
    quoted = (not quoted if ch == '"' else True if ch == "“" else False if ch == "”"
              else quoted)
    depth = depth + (ch in _OPEN) - (ch in _CLOSE and depth > 0)
    column = 0 if ch == "\n" else column + 1
    letter = ch.isalpha()
    in_word = in_word + 1 if letter else 0
    after = text[t + 1] if t + 1 < N else " "
    values = {"inside quotes": quoted, "inside brackets": depth > 0,
              "position in the line": column, "position in the word": in_word,
              "start of a word": in_word == 1, "inside a word": letter,
              "end of a word next": letter and not after.isalpha(), "newline": ch == "\n",
              "start of a line": t > 0 and text[t - 1] == "\n", "space": ch == " ",
              "vowel": ch in "aeiouAEIOU", "upper case": ch.isupper(),
              "punctuation": not (ch.isalnum() or ch.isspace())}
    for name, v in values.items():
      out[name][t] = v
  return out


def correlations(values: np.ndarray, prop: np.ndarray) -> np.ndarray:
  """Pearson's r of each column of values [N, U] with prop [N]: [U] (0 where either is
  constant)."""
  v = values - values.mean(axis=0)
  p = prop - prop.mean()
  den = np.sqrt(np.sum(v * v, axis=0) * np.sum(p * p))
  return np.divide(v.T @ p, den, out=np.zeros(values.shape[1]), where=den > 0)


def propose(units: list[dict[str, np.ndarray]], props: dict[str, np.ndarray],
            per_property: int = PROPOSED) -> list[dict[str, Any]]:
  """For each property that varies over the text, the units of every layer and kind whose
  values correlate most with it (largest |r|), best property first."""
  names = [(k + 1, kind, i) for k, layer in enumerate(units) for kind, v in layer.items()
           for i in range(v.shape[1])]
  values = np.concatenate([v for layer in units for v in layer.values()], axis=1)
  out = []
  for prop, p in props.items():
    if np.ptp(p) == 0:
      continue
    r = correlations(values.astype(np.float64), p)
    best = np.argsort(-np.abs(r), kind="stable")[:per_property]
    out.append({"property": prop, "about": PROPERTIES.get(prop, ""),
                "units": [{"layer": names[j][0], "kind": names[j][1], "index": names[j][2],
                           "r": round(float(r[j]), 4)} for j in best]})
  return sorted(out, key=lambda d: -abs(d["units"][0]["r"]))


def shown(v: np.ndarray, kind: str) -> np.ndarray:
  """The value a unit is coloured by, in [-1, 1]: tanh(c) for an LSTM's memory (unbounded;
  as Karpathy et al. show it), the others as they are (clipped)."""
  return np.tanh(v) if kind == "c" else np.clip(v, -1.0, 1.0)


def quantize(v: np.ndarray, kind: str) -> str:
  """A layer's [N, H] values of one kind for the page: base64 of uint8 [H, N] (unit-major),
  q = round((shown + 1) * 127.5), so shown = q / 127.5 - 1 to within 1 / 255."""
  q = np.rint((shown(np.asarray(v, np.float64), kind) + 1.0) * 127.5).astype(np.uint8)
  return base64.b64encode(np.ascontiguousarray(q.T).tobytes()).decode("ascii")


def unit_key(layer: int, kind: str, index: int) -> str:
  """How the JSON names a unit: "1 c 17" (layer from 1, kind, index from 0)."""
  return f"{layer} {kind} {index}"


# ---- the page ----

def page_data(trace: Trace, text: str, vocab: data.Vocab, about: dict[str, Any]) -> dict:
  """The page's numbers: everything the template draws, and what the JSON file holds.

  Per character t: chars[t], bits[t] (null: not scored), top.ids[t] / top.p[t]
  (what the model predicted for it; empty for t = 0). units.layers[k][kind]:
  every unit's values, one byte per character (`quantize`); values: the
  proposed units' exact values (5 decimals), by `unit_key`.
  """
  props = text_properties(text)
  proposals = propose(trace.units, props)
  values = {}
  for p in proposals:  # the best unit of each property
    u = p["units"][0]
    v = trace.units[u["layer"] - 1][u["kind"]][:, u["index"]]
    values[unit_key(u["layer"], u["kind"], u["index"])] = np.round(v.astype(float), 5).tolist()
  return dict(
      about, format="jax_charrnn.visualize/1", vocab=vocab.show_each("".join(vocab.chars)),
      chars=vocab.show_each(text),
      bits=[None if math.isnan(b) else round(float(b), 4) for b in trace.bits],
      top={"ids": [[]] + trace.top_ids[1:].tolist(),
           "p": [[]] + np.round(trace.top_p[1:], 4).tolist()},
      units={"kinds": list(trace.units[0]),
             "hidden_size": int(next(iter(trace.units[0].values())).shape[1]),
             "encoding": "base64 of uint8 [H, N]; shown = q / 127.5 - 1 (c: tanh(c))",
             "layers": [{kind: quantize(v, kind) for kind, v in layer.items()}
                        for layer in trace.units]},
      values=values,
      properties=[{"name": n, "about": PROPERTIES.get(n, ""), "present": bool(np.ptp(p) > 0)}
                  for n, p in props.items()],
      proposals=proposals,
      saturation=[{"layer": k + 1,
                   "gates": {g: {"low": np.round(low, 4).tolist(),
                                 "high": np.round(high, 4).tolist()}
                             for g, (low, high) in layer.items()}}
                  for k, layer in enumerate(trace.saturation)])


def render(numbers: dict, net: dict | None = None) -> str:
  """The page: the template (visualize.html, shipped with the package) with the numbers, the
  Write panel's network (`webnet.network`; None: no panel) and its script in it.

  "<" is written as \\u003c inside the JSON, so that no text can end the script element.
  """
  files = importlib.resources.files("jax_charrnn")
  template = files.joinpath(PAGE).read_text("utf-8")
  script = files.joinpath(WRITE_JS).read_text("utf-8")
  for mark in ("__DATA__", "__NET__", "__WRITE__"):
    assert template.count(mark) == 1, f"the template holds one {mark}"
  assert "</script" not in script.lower(), "the script cannot end its own element"
  blob = lambda v: json.dumps(v, ensure_ascii=False,
                             separators=(",", ":")).replace("<", "\\u003c")
  # One pass, so that nothing the numbers hold is read as a mark.
  parts = {"__DATA__": blob(numbers), "__NET__": blob(net), "__WRITE__": script}
  return re.sub("__DATA__|__NET__|__WRITE__", lambda m: parts[m.group(0)], template)


@dataclasses.dataclass(frozen=True)
class Written:
  """What `write_page` wrote."""

  page: str            # the HTML file
  numbers: str         # the JSON file beside it
  chars: int           # characters read
  seconds: float       # reading, tracing and writing
  what: str            # the text, in words
  bits_per_char: float  # evaluate's score of that text
  proposals: list      # the proposals, best first
  skipped: str = ""    # what the score passed over, as evaluate says it ("" if nothing)
  write: str = ""      # the Write panel's weights and what they change, in words


def _text(run: saved.Saved, data_path: str, max_chars: int, unit_count: int,
          unit_bytes: int, budgeted: bool) -> tuple[str, np.ndarray, dict, str]:
  """(text, ids, unknown characters, the text in words) of the stretch to show."""
  # One byte per unit per character: a model with many units is shown over fewer characters.
  fit = max(2, unit_bytes // max(unit_count, 1))
  limit = min(max_chars, fit)
  note = (f"; at most {fit:,} characters fit the page's {unit_bytes / 2**20:.1f} MB of values "
          f"for {unit_count:,} units" if fit < max_chars else "")
  if note and budgeted and unit_bytes < UNIT_BYTES:  # --max_chars not given: it would read more
    note += f"; --max_chars reads more, up to {UNIT_BYTES >> 20} MB of values in a larger page"
  unit = "bytes" if run.config.unit == "byte" else "characters"
  if data_path:
    text, more = data.head(data_path, limit, run.config.unit, run.config.lowercase,
                           run.config.raw_newlines)
    ids, unknown = run.vocab.encode_known(text)
    part = (f"the first {len(text):,} {unit} of its {os.path.getsize(data_path):,} bytes"
            if more else f"all {len(text):,} {unit}")
    return text, ids, unknown, f"{data_path} ({part}{note})"
  corpus = saved.corpus(run, "show its text")
  if run.config.val_fraction:
    n = min(limit, corpus.num_val)
    part = f"all {n:,} {unit}" if n == corpus.num_val else \
        f"its first {n:,} of {corpus.num_val:,} {unit}"
    return corpus.text(corpus.num_train, corpus.num_train + n), corpus.val_ids[:n].read(), {}, (
        f"the held-out tail of {corpus.source} ({part}{note})")
  start = max(0, corpus.num_symbols - limit)
  text = corpus.text(start, corpus.num_symbols)
  return text, corpus.tokens.symbols[start:].read(), {}, (
      f"the last {len(text):,} {unit} of {corpus.source}, which the run trained on: it has "
      f"no held-out split (val_fraction 0), so the surprisal is lower than on new text; pass "
      f"--data_path=FILE to show other text{note}")


def _paths(workdir: str, out: str) -> tuple[str, str]:
  """(page, numbers): --out (a file, or a directory to write visualize.html in), else the
  workdir; the JSON beside the page, with its name."""
  page = out or os.path.join(workdir, PAGE)
  if os.path.isdir(page):
    page = os.path.join(page, PAGE)
  stem = page[:-5] if page.endswith(".html") else page
  return page, stem + ".json"


def check_out(out: str, overwrite: bool) -> None:
  """--out's page and JSON, checked before any work (paths.py's rules: no existing file
  replaced without --overwrite; a directory gets visualize.html inside it)."""
  if out:
    for path in _paths("", out):
      paths.output_file(path, suffix=".html" if path.endswith(".html") else "",
                        overwrite=overwrite, example="page.html")


def _unit_room(net: Model, params: Params, weight_bytes: int,
               max_chars: int | None) -> tuple[int, int]:
  """(units per character, bytes the units may fill). Asked for no length, the page stays
  small (PAGE_BYTES with the Write panel's weights); asked for more, it reads that many, as
  far as UNIT_BYTES allows."""
  dtype = params.V.dtype
  layers = jax.eval_shape(net.trace, params, net.zero_carry((), dtype),
                          jnp.zeros(1, jnp.int32))[2]
  unit_count = sum(v.shape[-1] for layer in layers for v in layer["units"].values())
  if max_chars is not None:
    return unit_count, UNIT_BYTES
  return unit_count, min(UNIT_BYTES, max(MIN_UNIT_BYTES, PAGE_BYTES - weight_bytes))


def _model(run: saved.Saved, dtype) -> dict[str, Any]:
  """The page's words on the network read."""
  net = run.net
  return {"describe": net.describe(), "cell": run.config.cell, "layers": net.num_layers,
          "hidden_size": net.hidden_size, "vocab_size": net.vocab_size,
          "dtype": f"{run.config.dtype} run, read in {jnp.dtype(dtype).name}",
          "params": run.describe(), "which": run.which,
          "workdir": paths.shown(os.path.abspath(run.workdir))}


def write_page(run: saved.Saved, *, data_path: str = "", max_chars: int | None = None,
               out: str = "", weights: str = "auto") -> Written:
  """Writes the page of a saved run (`saved.load`) and its numbers (JSON) beside it, read in
  float64 when 64-bit JAX is on (as evaluate scores; the command line turns it on), else in
  the run's dtype.

  Args:
    run: the run's parameters (best or latest) and what goes with them.
    data_path: a UTF-8 text to show; empty: the run's held-out tail (or,
      without one, the end of its training text, saying so).
    max_chars: read at most this many characters (fewer if the units would not fit UNIT_BYTES).
      None: at most MAX_CHARS, as many as keep the units and the Write panel's weights within
      PAGE_BYTES (a 2 x 512 LSTM's page under 10 MB; larger weights make a larger page).
    out: the page's path (or a directory for visualize.html); empty:
      <workdir>/visualize.html. The JSON goes beside it (.html -> .json).
    weights: how the Write panel's weights go in the page (webnet.ENCODINGS; "none": no panel).

  Raises:
    UserError: a text with nothing to score, an output that cannot be written.
  """
  start = time.perf_counter()
  page, numbers_path = _paths(run.workdir, out)
  if not os.path.isdir(os.path.dirname(os.path.abspath(page))):
    raise errors.UserError(f"Cannot write {page!r}: its directory does not exist. Pass "
                           "--out=FILE.html in an existing directory.")
  net = run.net
  dtype = jnp.float64 if jax.config.jax_enable_x64 else run.params.V.dtype
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype), run.params)
  encoding = webnet.choose(run.params, weights)
  net_data = webnet.network(run, encoding)
  used = webnet.weight_bytes(run.params, encoding) if net_data else 0
  text, ids, unknown, what = _text(run, data_path, max_chars or MAX_CHARS,
                                   *_unit_room(net, params, used, max_chars),
                                   budgeted=max_chars is None)
  what = paths.shown(what)  # a file name's bytes that are not UTF-8 cannot go in the page
  if len(ids) < 2:
    raise errors.UserError(f"{what} is too short to show: one prediction needs two "
                           "characters.")
  score = score_ids(net, params, ids, unknown)
  if score.predictions == 0:
    raise errors.UserError(
        f"Nothing to score in {what}: every character after the first is outside the model's "
        f"vocabulary ({', '.join(map(repr, sorted(unknown)))}).")
  trace = trace_text(net, params, ids)
  about = {"model": _model(run, dtype),
           "text": {"what": what, "chars": len(text), "unknown": unknown},
           "bits_per_char": score.bits_per_char, "predictions": score.predictions,
           "numbers": paths.shown(os.path.basename(numbers_path))}
  numbers = page_data(trace, text, run.vocab, about)
  numbers["write"] = webnet.summary(run, encoding, ids, unknown, score.bits_per_char, dtype)
  numbers["text"]["seconds"] = round(time.perf_counter() - start, 2)
  # Both or neither (a Ctrl-C included): a rerun never finds one without the other.
  page_text = render(numbers, net_data)
  numbers_text = json.dumps(numbers, ensure_ascii=False)
  paths.write_out(page, lambda f: f.write(page_text.encode("utf-8")),
                  more=[(numbers_path, lambda f: f.write(numbers_text.encode("utf-8")))])
  return Written(page, numbers_path, len(text), time.perf_counter() - start, what,
                 score.bits_per_char, numbers["proposals"],
                 score.skipped_note(run.vocab.show_each),
                 numbers["write"].get("sentence", numbers["write"].get("why")))


# ---- the command line ----

def define_flags(flag_values=None) -> dict:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jax_charrnn import config  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  kw = dict(flag_values=flag_values, module_name=config.flag_module(__name__))
  return {
      "workdir": flags.DEFINE_string("workdir", None, "Directory of a training run.", **kw),
      "which": flags.DEFINE_enum("which", "best", ["best", "latest"], "Show the best "
                                 "parameters or the latest ones.", **kw),
      "data_path": flags.DEFINE_string("data_path", "", "A UTF-8 text to show. Empty: the "
                                       "run's own held-out tail (--val_fraction).", **kw),
      "max_chars": flags.DEFINE_integer("max_chars", None, f"Read at most this many "
                                        f"characters of the text. Unset: up to {MAX_CHARS:,}, "
                                        "fewer for a large network, so that the page stays "
                                        "small (a 2 x 512 LSTM's under 10 MB).", lower_bound=2,
                                        upper_bound=1_000_000, **kw),
      "out": flags.DEFINE_string("out", "", "Where to write the page (the JSON goes beside "
                                 "it; a directory: visualize.html in it). Empty: "
                                 "<workdir>/visualize.html. An existing file is refused unless "
                                 "--overwrite.", **kw),
      "overwrite": flags.DEFINE_bool("overwrite", False, "Replace an existing --out page and its "
                                     "JSON.", **kw),
      "weights": flags.DEFINE_enum("weights", "auto", list(webnet.ENCODINGS), "How the Write "
                                   "panel's weights go in the page: exact (the run's dtype: "
                                   "greedy text as sample's), float16, int8 (a float32 scale per "
                                   "row), none (no panel); auto: the most exact that keeps the "
                                   "page small.", **kw),
  }


_OWN: dict = {}


def main(argv: Sequence[str]) -> None:
  cli.no_extra_args(argv)
  o = {name: holder.value for name, holder in _OWN.items()}
  check_out(o["out"], o["overwrite"])
  jax.config.update("jax_enable_x64", True)  # read in float64, as evaluate scores
  w = write_page(cli.open_run(o["workdir"], o["which"]), data_path=o["data_path"],
                 max_chars=o["max_chars"], out=o["out"], weights=o["weights"])
  lines = [f"Read {w.chars:,} characters of {w.what} in {w.seconds:.1f} s: "
           f"{w.bits_per_char:.4f} bits/char{f' ({w.skipped})' if w.skipped else ''}.",
           f"Wrote {paths.shown(w.page)} ({os.path.getsize(w.page) / 2**20:.1f} MB; open it in "
           f"a browser) and {paths.shown(w.numbers)}.",
           f"Write panel: {w.write}."]
  if w.proposals:
    lines.append("Units that follow the text best (Pearson's r over the shown text):")
    for p in w.proposals[:5]:
      u = p["units"][0]
      lines.append(f"  {p['property']:<22} layer {u['layer']} {u['kind']}[{u['index']}]  "
                   f"r = {u['r']:+.2f}")
  sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  _OWN.update(define_flags())
  cli.run(main)
