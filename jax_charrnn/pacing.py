"""How much one jitted call may do, so that Ctrl-C is heard within about a second.

A jitted call cannot be stopped once it runs: a command that reads or draws
text one character after another (evaluate's and the trainer's held-out score,
sample's pieces, visualize's trace) is heard only between its calls. Each such
call is sized by the network's cost to about CALL_FLOPS of work.
"""

from __future__ import annotations

from typing import Any

from jax_charrnn import model

# Work per call: 15-40 ms on a 2-core CPU for float64 networks from the course's RNN to an
# LSTM of 3 x 768, one stream (docs/results.md#scoring-long-texts), far less on an accelerator.
CALL_FLOPS = 5e8
# Streams side by side share each weight matrix's reads (a matrix product in place of a
# matrix-vector one), so S of them cost far less than S times one: up to this many are counted
# as one, more in proportion (measured: 64 streams of a 2 x 512 LSTM take about 20 times one
# stream's time a character, not 64; docs/results.md).
SHARED_STREAMS = 4


def chars_per_call(params: Any, limit: int, streams: int = 1) -> int:
  """How many characters (per stream) one jitted call may read or draw so that it costs about
  CALL_FLOPS: about 2 flops per parameter per character per stream (a matrix-vector product
  per weight matrix), SHARED_STREAMS streams counted as one; at least 1, at most `limit`."""
  streams = max(streams, 1)
  flops = 2 * model.param_count(params) * streams / min(streams, SHARED_STREAMS)
  return int(max(1, min(limit, CALL_FLOPS // max(flops, 1))))
