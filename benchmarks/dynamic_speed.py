"""Dynamic evaluation's speed against the static score's, for a network of any size.

  python -m benchmarks.dynamic_speed                        # shakespeare_best's 2 x 512 LSTM
  python -m benchmarks.dynamic_speed --layers=1 --hidden=384 --chars=20000

Scores the last --chars characters of tiny-shakespeare with a freshly initialised network (the
work of a call does not depend on the weights' values), in float64 as `evaluate` scores, one
stream: the gradient statistics (dynamic.gradient_rms over the training text), the dynamic
score (dynamic.score, the defaults' segment) and the static one (score.score_ids), each timed
on a second call (the first compiles). Prints characters per second of each and what the held-out
tail of 111,539 predictions takes: `evaluate --dynamic` is the statistics plus the dynamic score
(--tune adds its grid, 10 scores of 20,000 characters).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL = 111_539

_CELL = flags.DEFINE_enum("cell", "lstm", ["rnn", "lstm", "gru"], "The cell.")
_LAYERS = flags.DEFINE_integer("layers", 2, "Layers.", lower_bound=1)
_HIDDEN = flags.DEFINE_integer("hidden", 512, "Units per layer.", lower_bound=1)
_CHARS = flags.DEFINE_integer("chars", 4000, "Characters scored (timed).", lower_bound=100)
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def main(argv: Sequence[str]) -> None:
  del argv
  logging.getLogger("jax").setLevel(logging.WARNING)  # not which accelerator plugins are absent
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax_charrnn import cells, data, dynamic, score  # pylint: disable=g-import-not-at-top
  from jax_charrnn.cells.ops import InitSpec  # pylint: disable=g-import-not-at-top
  from jax_charrnn.model import Model  # pylint: disable=g-import-not-at-top

  text = data.load_text(os.path.join(REPO, "data", "tinyshakespeare.txt"))
  vocab = data.Vocab.from_text(text)
  ids = vocab.encode(text)
  net = Model(cells.get(_CELL.value), vocab_size=vocab.size, hidden_size=_HIDDEN.value,
              num_layers=_LAYERS.value)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                        net.init(jax.random.key(0), InitSpec(dist="pytorch")))
  segment = dynamic.DEFAULT_SEGMENT
  seconds = {}

  def timed(name, fn):
    fn()  # the first call compiles; the second is timed
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    seconds[name] = time.perf_counter() - start
    return out

  prior, stat_chars = timed("stats", lambda: dynamic.gradient_rms(net, params, ids, segment))
  tail = ids[-_CHARS.value:]
  timed("dynamic", lambda: dynamic.score(net, prior, tail, dynamic.Settings()))
  timed("static", lambda: score.score_ids(net, params, tail).nats_per_char)
  stats_s = seconds["stats"]
  speed = {name: (len(tail) - 1) / seconds[name] for name in ("dynamic", "static")}
  out = dict(network=net.describe(), params=int(sum(a.size for a in jax.tree.leaves(params))),
             stat_chars=stat_chars, stats_seconds=round(stats_s, 2),
             dynamic_chars_per_s=round(speed["dynamic"]),
             static_chars_per_s=round(speed["static"]),
             tail_dynamic_seconds=round(stats_s + TAIL / speed["dynamic"]))
  print(f"{out['network']}, float64, one stream; {_CHARS.value - 1:,} predictions timed:")
  print(f"  gradient statistics  {stat_chars:,} training characters in {stats_s:.1f} s")
  print(f"  dynamic score        {out['dynamic_chars_per_s']:,} chars/s")
  print(f"  static score         {out['static_chars_per_s']:,} chars/s "
        f"({speed['static'] / speed['dynamic']:.1f}x the dynamic)")
  print(f"  evaluate --dynamic of the {TAIL:,} held-out predictions: about "
        f"{out['tail_dynamic_seconds']:,} s")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump(out, f)


if __name__ == "__main__":
  app.run(main)
