"""visualize's page with its Write panel in Chromium: its size, how long it takes to open, and
how long the network takes to write 500 characters in it.

  python -m benchmarks.page_speed --workdir=runs/shakespeare_best      # a trained run
  python -m benchmarks.page_speed                                      # a fresh 2 x 512 LSTM
  python -m benchmarks.page_speed --layers=1 --hidden=384 --rounds=5

Without --workdir, a freshly initialised network on tiny-shakespeare's characters (the page's
size and speed do not depend on the weights' values; what int8 changes does), its page over
the text's first characters. The page is written as `visualize` writes it (--weights=auto),
then opened --rounds times, each in a fresh headless Chromium (tools/browser.py): "open" is
from the navigation's start to the end of the load event, as the page's Navigation Timing says
(the file read, its numbers parsed and drawn, the network decoded);
"write" is 500 characters at temperature 0 through window.charrnn.generate, timed in the page.
Medians over the rounds.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
from typing import Sequence

from absl import app, flags
from absl import logging as absl_logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARS = 500

_WORKDIR = flags.DEFINE_string("workdir", "", "A trained run (its best parameters); empty: a "
                               "fresh network of --cell, --layers, --hidden.")
_CELL = flags.DEFINE_enum("cell", "lstm", ["rnn", "lstm", "gru"], "The cell (fresh network).")
_LAYERS = flags.DEFINE_integer("layers", 2, "Layers (fresh network).", lower_bound=1)
_HIDDEN = flags.DEFINE_integer("hidden", 512, "Units per layer (fresh network).", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Browsers opened (medians over them).",
                               lower_bound=1)
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def _fresh_run(workdir: str):
  """A saved.Saved-like run of a fresh network on tiny-shakespeare's characters."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax_charrnn import cells, data, saved  # pylint: disable=g-import-not-at-top
  from jax_charrnn.cells.ops import InitSpec  # pylint: disable=g-import-not-at-top
  from jax_charrnn.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from jax_charrnn.model import Model  # pylint: disable=g-import-not-at-top
  path = os.path.join(REPO, "data", "tinyshakespeare.txt")
  vocab = data.Vocab.from_text(data.load_text(path))
  net = Model(cells.get(_CELL.value), vocab_size=vocab.size, hidden_size=_HIDDEN.value,
              num_layers=_LAYERS.value)
  config = TrainConfig(data_path=path, cell=_CELL.value, num_layers=_LAYERS.value,
                       hidden_size=_HIDDEN.value)
  return saved.Saved(workdir, net, net.init(jax.random.key(0), InitSpec(dist="pytorch")),
                     vocab, config, net.zero_carry((), jnp.float32), 0, 0, "fresh", 0, {}), path


def main(argv: Sequence[str]) -> None:
  del argv
  logging.getLogger("jax").setLevel(logging.WARNING)
  absl_logging.set_verbosity(absl_logging.WARNING)  # not orbax's notes on reading a checkpoint
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_x64", True)  # as the command line reads
  from jax_charrnn import saved, visualize  # pylint: disable=g-import-not-at-top
  from tools import browser  # pylint: disable=g-import-not-at-top
  why = browser.missing()
  if why:
    sys.exit(f"The page benchmark needs a browser: {why}.")
  out_dir = tempfile.mkdtemp(prefix="page_speed_")
  if _WORKDIR.value:
    run, data_path = saved.load(_WORKDIR.value, "best"), ""
  else:
    run, data_path = _fresh_run(out_dir)
  w = visualize.write_page(run, data_path=data_path, out=os.path.join(out_dir, "page.html"))
  opened, wrote = [], []
  for _ in range(_ROUNDS.value):
    with browser.opened(w.page) as (page, requests, errors):
      opened.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                    / 1000)
      wrote.append(page.evaluate("""async n => { const t = performance.now();
          await window.charrnn.generate("", n, 0); return (performance.now() - t) / 1000; }""",
                                 CHARS))
      if requests or errors:
        sys.exit(f"The page reached out or failed: {requests} {errors}")
  net = run.net.describe()
  results = {"network": net, "page_bytes": os.path.getsize(w.page), "chars_shown": w.chars,
             "write": w.write, "open_s": round(statistics.median(opened), 3),
             "write_500_s": round(statistics.median(wrote), 3), "rounds": _ROUNDS.value}
  print(f"{net}, {'a fresh network' if not _WORKDIR.value else _WORKDIR.value}; "
        f"medians of {_ROUNDS.value} headless Chromium round{'s' * (_ROUNDS.value > 1)}")
  print(f"  page                 {results['page_bytes']:,} bytes ({w.chars:,} characters shown)")
  print(f"  Write panel          {w.write}")
  print(f"  open                 {results['open_s']:.2f} s")
  print(f"  write {CHARS} characters {results['write_500_s']:.2f} s "
        f"({CHARS / results['write_500_s']:,.0f} chars/s)")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
