"""Side-by-side training speed: `python -m benchmarks.train_speed`.

Times, in one run, on the same text and settings (one stream, m = 100, T = 25,
float32, K from the text):

  jax fused, manual BPTT     many updates per jitted call (the trainer's default)
  jax fused, jax.grad        the same with autodiff gradients
  jax one call per update    `jax.jit(update)` called from Python each step
  numpy min-char-rnn         Karpathy's gist as people run it (benchmarks/numpy_ref.py)
  numpy vectorised           a careful NumPy version, float64 and float32
  torch eager                nn.RNN + Adagrad, batch 1 (when torch is installed)

Machines here are shared and noisy, so the methods are timed in turns
(round-robin, after a warm-up) and the table shows medians and ratios
measured in the same run. Options:

  --profile     per-phase timing of the fused step (forward, backward,
                optimiser, bookkeeping) and the top XLA kernels from a JAX trace
  --full_run    7 epochs over a 1,107,542-character text (the course book's
                length, built from the corpus), timed as the trainer runs it
  --json=FILE   write the results as JSON
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax import lax

from benchmarks import numpy_ref, products, torch_ref
from jax_charrnn import bptt, cli, data, errors, loop, parallel, programs, tokens, walk
from jax_charrnn.config import COMPUTE_DTYPES, TrainConfig

_DATA = flags.DEFINE_string("data_path", "", "Text to train on (empty: the built-in corpus).")
_LOWER = flags.DEFINE_bool("lowercase", True, "Lowercase the text (as the notebook did).")
_HIDDEN = flags.DEFINE_integer("hidden_size", 100, "m.")
_SEQ = flags.DEFINE_integer("seq_length", 25, "T.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Updates per timed block for the JAX methods.",
                              lower_bound=1)
_SLOW_STEPS = flags.DEFINE_integer("slow_steps", 200, "Updates per timed block for NumPy, "
                                   "PyTorch and the one-call-per-update path.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed blocks per method (after one warm-up).",
                                lower_bound=1)
_METHODS = flags.DEFINE_list("methods", [], "Only these methods (default: all available).")
_JSON = flags.DEFINE_string("json", "", "Write the results to this JSON file.")
_PROFILE = flags.DEFINE_bool("profile", False, "Show where the fused step's time goes.")
_TRACE_DIR = flags.DEFINE_string("trace_dir", "", "With --profile: keep the JAX trace here "
                                 "(open it in Perfetto or TensorBoard).")
_FULL = flags.DEFINE_bool("full_run", False, "Also time 7 epochs over a 1.1M-character text.")
_THROUGHPUT = flags.DEFINE_bool("throughput", False, "Also the throughput table: batches of "
                                "streams over all devices, a sweep of runs, GFLOP/s vs peak.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8", "32", "128", "512"], "--throughput: batch sizes.")
_SWEEP_RUNS = flags.DEFINE_integer("sweep_runs", 8, "--throughput: runs in the vmapped sweep.")
_CELLS = flags.DEFINE_list("cells", ["lstm", "gru"], "Also time these cells (hand BPTT, "
                           "jax.grad, PyTorch) at --cell_hidden, --cell_batch, --cell_seq "
                           "(empty: skip).")
_CELL_HIDDEN = flags.DEFINE_integer("cell_hidden", 256, "H for the cells table.", lower_bound=1)
_CELL_BATCH = flags.DEFINE_integer("cell_batch", 64, "B streams for the cells table.",
                                   lower_bound=1)
_CELL_SEQ = flags.DEFINE_integer("cell_seq", 50, "T for the cells table.", lower_bound=1)
_CELL_LAYERS = flags.DEFINE_integer("cell_layers", 1, "Layers for the cells table.",
                                    lower_bound=1)
_DTYPES = flags.DEFINE_list("dtypes", ["float32"], "The cells table's compute dtypes: float32, "
                            "bfloat16 (mixed precision: --compute_dtype; PyTorch's rows under "
                            "torch.autocast).")
_CELL_STEPS = flags.DEFINE_integer("cell_steps", 20, "Updates per timed block for the cells "
                                   "table.", lower_bound=1)
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "Present the CPU to JAX as this many "
                                    "devices (0: JAX's default, one).")

BOOK_LENGTH = 1_107_542  # the course's book


def machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
          "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
          "python": platform.python_version()}


def _timed(fn: Callable[[], object]) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


class Method:
  """A way to train: `block()` runs `steps` updates and waits for them."""

  def __init__(self, name: str, steps: int, block: Callable[[], object], compile_s: float = 0.0):
    self.name, self.steps, self.block, self.compile_s = name, steps, block, compile_s
    self.times: list[float] = []

  @property
  def us_per_update(self) -> float:
    return float(np.median(self.times)) / self.steps * 1e6


def training(config: TrainConfig, vocab_size: int, steps_per_epoch: int):
  """(network, optimiser, fresh state) of `config`, as the trainer makes them."""
  net = loop.build_model(config, vocab_size)
  tx = loop.make_optimizer(config, steps_per_epoch)
  return net, tx, loop.init_state(config, net, tx)


def windows(inputs: np.ndarray, targets: np.ndarray, count: int) -> jax.Array:
  """The windows of the first `count` updates of the walk (walk.Corpus.windows's layout: each
  chunk's T inputs and, shifted by one, its targets), on the device: what one call reads. Every
  timed block reads the same ones (the data do not change the time)."""
  epoch = np.concatenate([inputs, targets[:, -1:]], axis=1)  # [n, T + 1, B]
  return jnp.asarray(epoch[np.arange(count) % len(epoch)])


def fused_method(name: str, config: TrainConfig, vocab_size: int, placed: jax.Array,
                 steps_per_epoch: int) -> Method:
  """The trainer's fused loop of `config`, compiled ahead, `len(placed)` updates a block."""
  net, tx, fresh = training(config, vocab_size, steps_per_epoch)
  steps, state = len(placed), [fresh]
  t = time.perf_counter()
  run = loop.make_run_steps(config, net, tx, steps, steps_per_epoch).lower(
      state[0], placed, jnp.int32(steps)).compile()
  compile_s = time.perf_counter() - t

  def block():
    state[0], _ = run(state[0], placed, jnp.int32(steps))
    jax.block_until_ready(state[0])

  return Method(name, steps, block, compile_s)


def jax_methods(config: TrainConfig, vocab_size: int, inputs, targets, steps: int,
                slow_steps: int) -> list[Method]:
  placed = windows(inputs, targets, steps)
  methods = [fused_method(f"jax fused ({steps}/call), "
                          f"{'manual BPTT' if grad == 'manual' else 'jax.grad'}",
                          config.replace(grad=grad), vocab_size, placed, len(inputs))
             for grad in ("manual", "autodiff")]
  net, tx, fresh = training(config, vocab_size, len(inputs))
  step_fn = loop.make_train_step(config, net, tx, len(inputs))
  one, window = [fresh], placed[0]
  t = time.perf_counter()
  jax.block_until_ready(step_fn(one[0], window))
  compile_s = time.perf_counter() - t

  def one_block():
    s = one[0]
    for _ in range(slow_steps):
      s, _ = step_fn(s, window)
    one[0] = jax.block_until_ready(s)

  methods.append(Method("jax one call per update", slow_steps, one_block, compile_s))
  return methods


def reference_methods(config: TrainConfig, vocab_size: int, inputs, targets,
                      slow_steps: int) -> tuple[list[Method], list[str]]:
  params = numpy_ref.course_arrays(training(config, vocab_size, len(inputs))[2].params)
  np_inputs, np_targets = inputs[:, :, 0], targets[:, :, 0]
  methods, notes = [], []
  gist = numpy_ref.MinCharRNN(*params, config.learning_rate, config.clip)
  methods.append(Method("numpy min-char-rnn (gist style)", slow_steps,
                        lambda: gist.train(np_inputs, np_targets, slow_steps)))
  for dtype in (np.float64, np.float32):
    ref = numpy_ref.NumpyCharRNN(*params, config.learning_rate, config.clip, dtype)
    methods.append(Method(f"numpy vectorised {np.dtype(dtype).name}", slow_steps,
                          lambda ref=ref: ref.train(np_inputs, np_targets, slow_steps)))
  if torch_ref.available():
    import torch  # pylint: disable=g-import-not-at-top
    net = torch_ref.TorchCharRNN(vocab_size, config.hidden_size, config.learning_rate, config.clip)
    methods.append(Method(f"torch {torch.__version__} eager ({torch.get_num_threads()} threads)",
                          slow_steps, lambda: net.train(np_inputs, np_targets, slow_steps)))
  else:
    notes.append("torch is not installed: the PyTorch column is skipped "
                 "(pip install torch, CPU build, to add it).")
  return methods, notes


def run_methods(methods: Sequence[Method], repeats: int) -> None:
  for m in methods:  # warm-up
    m.block()
  for _ in range(repeats):  # in turns, so that a noisy moment hits every method alike
    for m in methods:
      m.times.append(_timed(m.block))


def format_table(methods: Sequence[Method], chars_per_update: int) -> str:
  base = methods[0]
  rows = [("method", "us/update", "min", "chars/s", f"x vs {base.name.split(',')[0]}",
           "compile s")]
  for m in methods:
    rows.append((m.name, f"{m.us_per_update:.1f}", f"{min(m.times) / m.steps * 1e6:.1f}",
                 f"{chars_per_update / m.us_per_update * 1e6:,.0f}",
                 f"{m.us_per_update / base.us_per_update:.2f}",
                 f"{m.compile_s:.2f}" if m.compile_s else ""))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))) for r in rows]
  lines.insert(1, "-" * len(lines[0]))
  return "\n".join(lines)


# ---- where the fused step's time goes ----

def _fused(body, carry, steps):
  """A jitted fori_loop of `body` over `steps` iterations, timed like the trainer's."""
  f = jax.jit(lambda c: lax.fori_loop(0, steps, body, c))
  jax.block_until_ready(f(carry))
  return f


def profile_phases(config: TrainConfig, vocab_size: int, inputs, targets, steps: int,
                   repeats: int) -> list[tuple[str, float]]:
  """Median µs per update of programs that stop after each phase of the update."""
  x, y = jnp.asarray(inputs), jnp.asarray(targets)
  net, tx, state = training(config, vocab_size, len(inputs))
  params, h0 = state.params, state.carry
  flat = jax.flatten_util.ravel_pytree(params)[0]

  def chunk(i):
    pos = i % x.shape[0]
    return x[pos], y[pos]

  # The parameters ride in the loop's carry (not closed over), so that XLA
  # cannot fold them in as constants.
  def forward(i, c):
    p, h, acc = c
    loss, h = net.loss(p, h, *chunk(i))
    return p, h, acc + loss

  def forward_backward(i, c):
    p, h, acc = c
    (loss, h), g = bptt.loss_and_grads(net, p, h, *chunk(i))
    return p, h, acc + loss + sum(leaf.reshape(-1)[0] for leaf in jax.tree.leaves(g))

  def optimizer(i, c):
    p, s = c
    u, s = tx.update(p * 1e-3, s, p)
    return p + u, s

  programs = [
      ("forward: loss of a chunk (lax.scan over T)", _fused(forward, (params, h0, 0.0), steps)),
      ("forward + hand backward (no optimiser)",
       _fused(forward_backward, (params, h0, 0.0), steps)),
      ("clip + optimiser alone (flat vector)", _fused(optimizer, (flat, tx.init(flat)), steps)),
  ]
  run = loop.make_run_steps(config, net, tx, steps, len(inputs))
  placed = windows(inputs, targets, steps)
  whole = jax.jit(lambda s: run(s, placed, jnp.int32(steps)))
  jax.block_until_ready(whole(state))  # compile before timing, like the others
  programs.append(("the whole update (trainer's fused loop)", whole))
  carries = [(params, h0, 0.0), (params, h0, 0.0), (flat, tx.init(flat)), state]
  times = collections.defaultdict(list)
  for _ in range(repeats):
    for (name, f), c in zip(programs, carries):
      times[name].append(_timed(lambda: jax.block_until_ready(f(c))))
  return [(name, float(np.median(times[name])) / steps * 1e6) for name, _ in programs]


def profile_kernels(config: TrainConfig, vocab_size: int, inputs, targets, steps: int,
                    trace_dir: str) -> list[tuple[str, float, float]]:
  """(kernel, µs per update, calls per update) from a JAX trace of the fused loop.

  Tracing adds a fixed cost to every kernel, so small kernels look bigger than
  they are; use the ranking, not the absolute numbers.
  """
  placed = windows(inputs, targets, steps)
  net, tx, state = training(config, vocab_size, len(inputs))
  run = loop.make_run_steps(config, net, tx, steps, len(inputs))
  jax.block_until_ready(run(state, placed, jnp.int32(steps)))
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    jax.block_until_ready(run(state, placed, jnp.int32(steps)))
  files = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not files:
    return []
  with gzip.open(max(files, key=os.path.getmtime)) as f:
    events = json.load(f)["traceEvents"]
  total, calls = collections.Counter(), collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") == "X" and not name.startswith(("$", "end:", "ThunkExecutor", "while", "Pjit")):
      total[name] += e["dur"]
      calls[name] += 1
  return [(k, t / steps, calls[k] / steps) for k, t in total.most_common(15)]


def cell_flops_per_update(batch: int, T: int, H: int, K: int, blocks: int, layers: int) -> int:
  """Multiply-adds x 2 of one update of a stacked cell network with one-hot inputs: per layer
  the recurrent product forward, W_hh^T dz and dW_hh (3 G H^2 a character), for layers above
  the first also the input product, W_ih^T dz and dW_ih (3 G H^2); the read-out's three
  (3 K H). The first layer's input product is a gather. Elementwise work not counted."""
  return 2 * batch * T * (3 * blocks * H * H * (2 * layers - 1) + 3 * K * H)


def products_method(cell: str, blocks: int, layers: int, H: int, K: int, inputs: jax.Array,
                    steps: int) -> Method:
  """The cell's counted products alone, in the same loops (benchmarks/products.py): a bound."""
  params = [products.init(jax.random.key(0), blocks, layers, H, K)]
  t = time.perf_counter()
  run = products.make_run(blocks, steps).lower(params[0], inputs, jnp.int32(steps)).compile()
  compile_s = time.perf_counter() - t

  def block():
    params[0] = run(params[0], inputs, jnp.int32(steps))
    jax.block_until_ready(params[0])

  return Method(f"{cell} products alone (bound)", steps, block, compile_s)


def cells_table(text: str, cells: Sequence[str], H: int, B: int, T: int, layers: int,
                steps: int, repeats: int, dtypes: Sequence[str] = ("float32",)
                ) -> tuple[list[dict], list[str]]:
  """Each cell trained as the trainer does (fused loop, Adam, mean loss, B streams), hand BPTT
  and jax.grad, and PyTorch's nn.LSTM / nn.GRU step on the same shapes, in each compute dtype
  (bfloat16: --compute_dtype, PyTorch under torch.autocast); timed in turns."""
  from jax_charrnn import cells as cell_registry  # pylint: disable=g-import-not-at-top
  vocab = data.Vocab.from_text(text)
  inputs, targets = data.stream_chunks(vocab.encode(text), T, B)
  x, call_windows = jnp.asarray(inputs), windows(inputs, targets, steps)
  methods, notes, info = [], [], {}
  for cell in cells:
    blocks = cell_registry.get(cell).blocks
    base = TrainConfig(cell=cell, hidden_size=H, batch_size=B, seq_length=T, num_layers=layers,
                       optimizer="adam", learning_rate=3e-3, loss_reduction="mean",
                       init_dist="pytorch")
    for dtype in dtypes:
      suffix = "" if dtype == "float32" else f", {dtype}"
      for grad in ("manual", "autodiff"):
        label = "hand BPTT" if grad == "manual" else "jax.grad"
        methods.append(fused_method(f"{cell} jax fused, {label}{suffix}",
                                    base.replace(grad=grad, compute_dtype=dtype), vocab.size,
                                    call_windows, len(inputs)))
        info[methods[-1].name] = (cell, blocks, dtype)
      if dtype == "float32":
        methods.append(products_method(cell, blocks, layers, H, vocab.size, x, steps))
        info[methods[-1].name] = (cell, blocks, dtype)
      if torch_ref.available():
        import torch  # pylint: disable=g-import-not-at-top
        net = torch_ref.TorchCharCells(cell, vocab.size, H, layers,
                                       autocast=dtype == "bfloat16")
        methods.append(Method(f"{cell} PyTorch {torch.__version__} ({torch.get_num_threads()} "
                              f"threads){suffix}", steps,
                              lambda net=net: net.train(inputs, targets, steps)))
        info[methods[-1].name] = (cell, blocks, dtype)
  if not torch_ref.available():
    notes.append("torch is not installed: the PyTorch rows are skipped.")
  notes.append("products alone (bound): the same matrix products in the same loops, without the "
               "cell's arithmetic or the optimiser (benchmarks/products.py)")
  peak_method = matmul_method()
  run_methods(methods + [peak_method], repeats)
  peak = matmul_gflops(peak_method.us_per_update)
  fastest = matmul_gflops(min(peak_method.times) / peak_method.steps * 1e6)
  rows = []
  for m in methods:
    cell, blocks, dtype = info[m.name]
    flops = cell_flops_per_update(B, T, H, vocab.size, blocks, layers)
    rows.append({"method": m.name, "cell": cell, "layers": layers, "hidden": H, "batch": B,
                 "seq": T, "dtype": dtype, "ms_per_update": m.us_per_update / 1e3,
                 "us_per_update": m.us_per_update,
                 "chars_per_s": B * T / m.us_per_update * 1e6,
                 "gflops": flops / m.us_per_update / 1e3,
                 "percent_of_peak": 100 * flops / m.us_per_update / 1e3 / peak,
                 "compile_s": m.compile_s})
  for cell in cells:  # ratios within a cell: jax.grad and torch against the hand BPTT
    mine = [r for r in rows if r["cell"] == cell]
    hand = mine[0]["us_per_update"]
    for r in mine:
      r["x_vs_hand_bptt"] = r["us_per_update"] / hand
  return rows, notes + [f"matmul peak measured here: {peak:.0f} GFLOP/s (2048x2048 float32, "
                        f"median of blocks timed in turns with the rows above; fastest block "
                        f"{fastest:.0f})"]


def format_cells(rows: Sequence[dict]) -> str:
  header = ("method", "ms/update", "chars/s", "x vs hand BPTT", "GFLOP/s", "% of peak",
            "compile s")
  lines = [header] + [(r["method"], f"{r['us_per_update'] / 1e3:.2f}",
                       f"{r['chars_per_s']:,.0f}", f"{r['x_vs_hand_bptt']:.2f}",
                       f"{r['gflops']:.1f}", f"{r['percent_of_peak']:.1f}%",
                       f"{r['compile_s']:.2f}" if r["compile_s"] else "") for r in rows]
  widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
  out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                   enumerate(zip(r, widths))) for r in lines]
  out.insert(1, "-" * len(out[0]))
  return "\n".join(out)


def flops_per_update(batch: int, T: int, m: int, K: int) -> int:
  """Multiply-adds x 2 of one update: two time loops (W h, W^T da), dW, and the output
  layer's three products (V h, V^T g, g h^T); elementwise work not counted."""
  return 2 * batch * T * (3 * m * m + 3 * m * K)


def matmul_method(n: int = 2048, count: int = 10) -> Method:
  """The float32 n x n matrix product as a Method (`count` a block), to be timed in turns
  with the methods whose share of it a table shows, so that both see the same moments of a
  shared machine; `matmul_gflops` turns its µs per product into GFLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))

  def block():
    for _ in range(count):
      out = f(a)
    jax.block_until_ready(out)

  return Method(f"matmul {n}x{n}", count, block)


def matmul_gflops(us_per_product: float, n: int = 2048) -> float:
  return 2 * n ** 3 / us_per_product / 1e3


def throughput(config: TrainConfig, text: str, batches: Sequence[int], sweep_runs: int,
               repeats: int) -> dict:
  """Characters/s of the fused loop for several batch sizes, and of a vmapped sweep."""
  vocab = data.Vocab.from_text(text)
  ids = vocab.encode(text)
  devices = len(jax.devices())
  rows = []
  peak = matmul_method()
  peak.block()  # warm-up
  for batch in batches:
    cfg = config.replace(batch_size=batch, loss_reduction="mean")
    inputs, targets = data.stream_chunks(ids, cfg.seq_length, batch)
    n_dev = max(d for d in range(1, devices + 1) if batch % d == 0)
    mesh = parallel.make_mesh(n_dev, batch)
    net, tx, fresh = training(cfg, vocab.size, len(inputs))
    shardings = parallel.state_shardings(fresh, mesh)
    state = [parallel.put(fresh, shardings)]
    steps = max(10, min(2000, 100_000 // batch))
    corpus = walk.split(tokens.of_text(text, "throughput"), seq_length=cfg.seq_length,
                        batch_size=batch)
    placed = programs.Feed(corpus, steps, parallel.data_sharding(mesh)).take(0)
    run = loop.make_run_steps(cfg, net, tx, steps, len(inputs), shardings)

    def block(run=run, state=state, placed=placed, steps=steps):
      state[0], _ = run(state[0], placed, jnp.int32(steps))
      jax.block_until_ready(state[0])

    block()
    times = []
    for _ in range(repeats):  # the peak in turns with the batch's blocks (see matmul_method)
      times.append(_timed(block))
      peak.times.append(_timed(peak.block))
    us = float(np.median(times)) / steps * 1e6
    rows.append({"batch": batch, "devices": n_dev, "us_per_update": us,
                 "chars_per_s": batch * cfg.seq_length / us * 1e6,
                 "gflops": flops_per_update(batch, cfg.seq_length, cfg.hidden_size,
                                            vocab.size) / us / 1e3})
  # A sweep: `sweep_runs` runs of one stream in one vmapped program, against one run.
  inputs, targets = data.stream_chunks(ids, config.seq_length, 1)
  steps = 500
  one = windows(inputs, targets, steps)
  timings = {}
  for runs in (1, sweep_runs):
    net, tx, _ = training(config, vocab.size, len(inputs))
    states = [loop.stack([training(config.replace(seed=i), vocab.size, len(inputs))[2]
                          for i in range(runs)])]
    by_run = parallel.run_sharding(runs)
    if by_run is not None:
      states[0] = jax.device_put(states[0], by_run)
    run = loop.make_run_many(config, net, tx, steps, len(inputs), by_run)

    def block(run=run, states=states):
      states[0], _ = run(states[0], one, jnp.int32(steps))
      jax.block_until_ready(states[0])

    block()
    timings[runs] = float(np.median([_timed(block) for _ in range(repeats)])) / steps * 1e6
  return {"batches": rows, "sweep": {"runs": sweep_runs, "us_per_step_one_run": timings[1],
                                     "us_per_step_all_runs": timings[sweep_runs],
                                     "cost_vs_one_run": timings[sweep_runs] / timings[1]},
          "matmul_peak_gflops": matmul_gflops(peak.us_per_update), "devices": devices}


def full_run(config: TrainConfig, text: str) -> dict:
  """7 epochs over a text of the course book's length, as the trainer runs them (its windows
  read and placed a call ahead: programs.Feed)."""
  book = (text * (BOOK_LENGTH // len(text) + 1))[:BOOK_LENGTH]
  corpus = walk.split(tokens.of_text(book, "full run"), seq_length=config.seq_length,
                      batch_size=1)
  vocab, n = corpus.vocab, corpus.steps_per_epoch
  total = 7 * n
  net, tx, state = training(config, vocab.size, n)
  feed = programs.Feed(corpus, config.steps_per_call)
  t = time.perf_counter()
  run = loop.make_run_steps(config, net, tx, config.steps_per_call, n).lower(
      state, feed.abstract(), jnp.int32(1)).compile()
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  done = 0
  while done < total:
    k = min(config.steps_per_call, total - done)
    state, metrics = run(state, feed.take(done), jnp.int32(k))
    done += k
    feed.ahead(done)
  jax.block_until_ready(state)
  train_s = time.perf_counter() - t
  return {"characters": len(book), "vocab_size": vocab.size, "updates": total,
          "train_seconds": train_s, "compile_seconds": compile_s,
          "final_smooth_loss": float(state.smooth_loss), "us_per_update": train_s / total * 1e6}


def _write_profile(out, config: TrainConfig, vocab_size: int, inputs, targets) -> dict:
  """--profile: the phases' and the top kernels' lines; returns them for the JSON."""
  out.write("\nWhere the fused step's time goes (µs per update, median; each line a separate "
            "program that stops after that phase):\n")
  phases = profile_phases(config, vocab_size, inputs, targets, _STEPS.value, _REPEATS.value)
  for name, us in phases:
    out.write(f"  {us:8.1f}  {name}\n")
  trace_dir = _TRACE_DIR.value or tempfile.mkdtemp(prefix="jax_charrnn_trace_")
  try:
    kernels = profile_kernels(config, vocab_size, inputs, targets, min(_STEPS.value, 500),
                              trace_dir)
  finally:
    if not _TRACE_DIR.value:  # a trace is tens of MB: kept only where asked for
      shutil.rmtree(trace_dir, ignore_errors=True)
  kept = f"trace kept in {trace_dir}" if _TRACE_DIR.value else "--trace_dir=DIR keeps the trace"
  out.write(f"\nTop XLA kernels in a trace of the fused loop (tracing inflates small kernels; "
            f"{kept}):\n")
  for name, us, calls in kernels:
    out.write(f"  {us:8.1f} µs/update  {calls:5.1f} calls/update  {name}\n")
  return {"phases": phases, "kernels": kernels}


def _write_cells(out, text: str) -> list[dict]:
  """The cells table (--cells ...) and its notes; returns its rows for the JSON."""
  out.write(f"\nCells: {_CELL_LAYERS.value} layer(s), H = {_CELL_HIDDEN.value}, B = "
            f"{_CELL_BATCH.value} streams of T = {_CELL_SEQ.value}, Adam, mean loss, "
            f"{' and '.join(_DTYPES.value)} (median of {_REPEATS.value} blocks of "
            f"{_CELL_STEPS.value} updates, in turns)\n")
  rows, cell_notes = cells_table(text, _CELLS.value, _CELL_HIDDEN.value, _CELL_BATCH.value,
                                 _CELL_SEQ.value, _CELL_LAYERS.value, _CELL_STEPS.value,
                                 _REPEATS.value, _DTYPES.value)
  out.write(format_cells(rows) + "\n")
  for note in cell_notes:
    out.write(f"Note: {note}\n")
  return rows


def _write_full_run(out, config: TrainConfig, text: str) -> dict:
  """--full_run: 7 epochs over a text of the book's length, as the trainer runs them."""
  fr = full_run(config.replace(steps_per_call=1000), text)
  out.write(f"\n7 epochs over a {fr['characters']:,}-character text (K = {fr['vocab_size']}): "
            f"{fr['updates']:,} updates in {fr['train_seconds']:.1f} s of training "
            f"({fr['us_per_update']:.1f} µs/update), {fr['compile_seconds']:.1f} s compile; "
            f"final smooth loss {fr['final_smooth_loss']:.2f}\n")
  return fr


def _write_throughput(out, config: TrainConfig, text: str) -> dict:
  """--throughput: characters/s by batch size, GFLOP/s against the peak, and a sweep."""
  tp = throughput(config, text, [int(b) for b in _BATCHES.value], _SWEEP_RUNS.value,
                  _REPEATS.value)
  peak = tp["matmul_peak_gflops"]
  out.write(f"\nThroughput (mean loss, fused loop, streams split over up to {tp['devices']} "
            f"device(s)); matmul peak measured here: {peak:.0f} GFLOP/s (2048x2048 float32, "
            f"median of blocks timed in turns with the batches' blocks)\n")
  out.write(f"{'batch':>6} {'devices':>7} {'us/update':>10} {'chars/s':>12} {'GFLOP/s':>8} "
            f"{'% of peak':>9}\n")
  for r in tp["batches"]:
    out.write(f"{r['batch']:>6} {r['devices']:>7} {r['us_per_update']:>10.1f} "
              f"{r['chars_per_s']:>12,.0f} {r['gflops']:>8.1f} {100 * r['gflops'] / peak:>8.1f}%\n")
  sw = tp["sweep"]
  out.write(f"Sweep: {sw['runs']} runs of one stream in one vmapped program: "
            f"{sw['us_per_step_all_runs']:.1f} µs per step of all runs, "
            f"{sw['cost_vs_one_run']:.2f}x the time of one run "
            f"({sw['us_per_step_one_run']:.1f} µs)\n")
  return tp


def main(argv: Sequence[str]) -> None:
  del argv
  wrong = set(_DTYPES.value) - set(COMPUTE_DTYPES)
  if wrong or not _DTYPES.value:
    raise errors.UserError(f"--dtypes takes {' and '.join(COMPUTE_DTYPES)} (comma-separated); "
                           f"got {','.join(_DTYPES.value) or 'nothing'}.")
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  text = data.load_text(_DATA.value, _LOWER.value)
  vocab = data.Vocab.from_text(text)
  config = TrainConfig(hidden_size=_HIDDEN.value, seq_length=_SEQ.value,
                       steps_per_call=_STEPS.value)
  inputs, targets = data.stream_chunks(vocab.encode(text), config.seq_length, 1)
  info = machine()
  out = sys.stdout
  out.write(f"Machine: {info['cpu']}, {info['cores']} cores; jax {info['jax']} on "
            f"{info['backend']} ({info['device']}); Python {info['python']}\n")
  out.write(f"Text: {_DATA.value or data.BUILTIN_CORPUS_NAME}{' (lowercased)' if _LOWER.value else ''}"
            f", {len(text):,} characters, K = {vocab.size}; m = {config.hidden_size}, "
            f"T = {config.seq_length}, one stream, float32.\n")
  out.write(f"Median of {_REPEATS.value} blocks after a warm-up, methods timed in turns.\n\n")

  methods = jax_methods(config, vocab.size, inputs, targets, _STEPS.value, _SLOW_STEPS.value)
  refs, notes = reference_methods(config, vocab.size, inputs, targets, _SLOW_STEPS.value)
  methods += refs
  if _METHODS.value:
    methods = [m for m in methods if any(k in m.name for k in _METHODS.value)]
    if not methods:
      raise errors.UserError(f"--methods={','.join(_METHODS.value)} matches no method.")
  run_methods(methods, _REPEATS.value)
  out.write(format_table(methods, config.seq_length) + "\n")
  for note in notes:
    out.write(f"Note: {note}\n")
  result = {"machine": info, "text_chars": len(text), "vocab_size": vocab.size,
            "hidden_size": config.hidden_size, "seq_length": config.seq_length,
            "methods": [{"name": m.name, "us_per_update": m.us_per_update,
                         "min_us_per_update": min(m.times) / m.steps * 1e6,
                         "chars_per_s": config.seq_length / m.us_per_update * 1e6,
                         "compile_s": m.compile_s, "steps_per_block": m.steps,
                         "blocks": len(m.times)} for m in methods]}

  if _PROFILE.value:
    result["profile"] = _write_profile(out, config, vocab.size, inputs, targets)
  if _CELLS.value:
    result["cells"] = _write_cells(out, text)
  if _FULL.value:
    result["full_run"] = _write_full_run(out, config, text)
  if _THROUGHPUT.value:
    result["throughput"] = _write_throughput(out, config, text)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)
    out.write(f"\nWrote {_JSON.value}\n")


if __name__ == "__main__":
  cli.run(main)
