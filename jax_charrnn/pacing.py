"""How much one jitted call may do, so that Ctrl-C is heard within about a second.

A jitted call cannot be stopped once it runs: a command that reads or draws
text one character after another (evaluate's and the trainer's held-out score,
sample's pieces, visualize's trace) is heard only between its calls. Each such
call is sized by the network's cost to about CALL_FLOPS of work.
"""

from __future__ import annotations

from typing import Any

from jax_charrnn import model

# Work per call: about 0.2 s on a busy 2-core CPU for a float64 LSTM (docs/results.md gives
# the measurements that chose it), far less on an accelerator.
CALL_FLOPS = 5e8


def chars_per_call(params: Any, limit: int, streams: int = 1) -> int:
  """How many characters (per stream) one jitted call may read or draw so that it costs about
  CALL_FLOPS: about 2 flops per parameter per character per stream (a matrix-vector product
  per weight matrix), at least 1 and at most `limit`."""
  flops = 2 * model.param_count(params) * max(streams, 1)
  return int(max(1, min(limit, CALL_FLOPS // max(flops, 1))))
