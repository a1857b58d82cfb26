"""docs/speed.md's benchmark commands run and print what they say (shrunk: the shapes and block
sizes below). The cells table: the trainer's step (hand BPTT), jax.grad's, the same products alone
(a bound) and, where torch is installed, PyTorch's, each with its ratio to the hand BPTT and its
share of the measured matmul peak. The others: the side-by-side table, the profile, the 7-epoch
run and the throughput table. And docs/texts.md's benchmark of a big text, shrunk."""

import json
import os
import re
import shlex

import pytest

from helpers import REPO, run_module

SMALL = {"--cell_hidden": "16", "--cell_batch": "4", "--cell_seq": "10", "--cell_steps": "2",
         "--repeats": "1"}


# The other commands shrunk: short timed blocks, one small cell, two batch sizes, a sweep of two.
SHRINK = ("--steps=20", "--slow_steps=5", "--repeats=1", "--cells=lstm", "--cell_hidden=8",
          "--cell_batch=2", "--cell_seq=5", "--cell_steps=2", "--batches=1,2", "--sweep_runs=2")


def _readme_speed_commands() -> list[list[str]]:
  """The commands of docs/speed.md (README's Speed section links there), each as python -m's
  arguments."""
  with open(f"{REPO}/docs/speed.md", encoding="utf-8") as f:
    text = f.read()
  section = text[text.index("## The commands"):]
  block = section[section.index("```sh\n") + 6:]
  block = block[:block.index("```")].replace("\\\n", " ")
  return [shlex.split(l.split("  #")[0])[2:] for l in block.splitlines() if l.strip()]


def _readme_cells_command() -> list[str]:
  lines = [c for c in _readme_speed_commands() if any(a.startswith("--cells=") for a in c)]
  assert len(lines) == 1, lines
  return lines[0]


@pytest.mark.slow
def test_readmes_cells_table_command_times_hand_bptt_jax_grad_and_torch(tmp_path):
  command = _readme_cells_command()
  assert command[0] == "benchmarks.train_speed"
  shown = dict(a.split("=", 1) for a in command[1:])
  assert (shown["--cells"], shown["--cell_layers"], shown["--cell_hidden"]) == ("lstm", "2", "512")
  assert (shown["--cell_batch"], shown["--cell_seq"]) == ("64", "100")
  args = [f"{k}={SMALL.get(k, v)}" for k, v in shown.items()]
  out = tmp_path / "speed.json"
  r = run_module(command[0], *args, f"--json={out}", timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "Cells: 2 layer(s), H = 16, B = 4 streams of T = 10" in r.stdout
  rows = json.loads(out.read_text())["cells"]
  names = [row["method"] for row in rows]
  assert names[:3] == ["lstm jax fused, hand BPTT", "lstm jax fused, jax.grad",
                       "lstm products alone (bound)"], names
  assert rows[0]["x_vs_hand_bptt"] == 1.0
  for row in rows:
    assert row["us_per_update"] > 0 and 0 < row["percent_of_peak"]
    assert abs(row["chars_per_s"] - 4 * 10 / row["us_per_update"] * 1e6) < 1e-6 * row["chars_per_s"]
  torch_rows = [n for n in names if n.startswith("lstm PyTorch")]
  assert len(torch_rows) == 1 or "torch is not installed" in r.stdout, names
  assert re.search(r"matmul peak measured here: \d+ GFLOP/s \(2048x2048 float32, median of "
                   r"blocks timed in turns with the rows above; fastest block \d+\)", r.stdout)
  assert "products alone (bound): the same matrix products in the same loops" in r.stdout


# What each of the other commands prints beyond the side-by-side table, by its flags.
EXPECTED = {
    (): [],
    ("--profile",): ["Where the fused step's time goes", "forward", "Top XLA kernels"],
    ("--full_run", "--json=speed.json"): ["7 epochs over a 1,107,542-character text", "Wrote "],
    ("--throughput", "--cpu_devices=2"): ["Throughput (mean loss, fused loop, streams split over "
                                          "up to 2 device(s))", "Sweep: 2 runs of one stream",
                                          "median of blocks timed in turns with the batches'"],
}


@pytest.mark.slow
@pytest.mark.parametrize("flags", list(EXPECTED), ids=lambda f: " ".join(f) or "plain")
def test_readmes_other_speed_commands_run_and_print_their_tables(tmp_path, flags):
  commands = {tuple(c[1:]): c for c in _readme_speed_commands()
              if not any(a.startswith("--cells=") for a in c)}
  assert set(commands) == set(EXPECTED), sorted(commands)
  command = commands[flags]
  assert command[0] == "benchmarks.train_speed"
  # README's --json=speed.json is written in the test's folder, not the checkout.
  args = [a.replace("--json=", f"--json={tmp_path}/") for a in command[1:]]
  r = run_module(command[0], *args, *SHRINK, timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "Median of 1 blocks after a warm-up" in r.stdout
  assert re.search(r"jax fused \(20/call\)", r.stdout), r.stdout[:3000]
  assert "Cells: 1 layer(s), H = 8, B = 2 streams of T = 5" in r.stdout
  for phrase in EXPECTED[flags]:
    assert phrase in r.stdout, r.stdout[-3000:]
  if "--json=speed.json" in command:
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["full_run"]["updates"] > 0 and saved["full_run"]["train_seconds"] > 0
  if "--throughput" in command:
    rows = re.findall(r"^ +(\d+) +(\d+) +[\d.]+ +[\d,]+ +[\d.]+ +[\d.]+%$", r.stdout, re.M)
    assert [(int(b), int(d)) for b, d in rows] == [(1, 1), (2, 2)], r.stdout[-2000:]


def _texts_big_text_command() -> list[str]:
  """docs/texts.md's command of the big-text benchmark, as python -m's arguments."""
  with open(f"{REPO}/docs/texts.md", encoding="utf-8") as f:
    text = f.read()
  lines = [l for l in text.splitlines() if l.startswith("python -m benchmarks.big_text")]
  assert len(lines) == 1, lines
  return shlex.split(lines[0].split("  #")[0])[2:]


@pytest.mark.slow
def test_the_big_text_benchmark_reports_memory_start_and_speed_of_both_texts(tmp_path):
  """Shrunk to 3 MB against 1 MB and one later run each: the table, the four summary lines, and
  a JSON whose figures are the runs' own (a first run pays the token pass, a later one not)."""
  command = _texts_big_text_command()
  assert command == ["benchmarks.big_text"]
  out = tmp_path / "big.json"
  r = run_module(*command, "--size_mb=3", "--small_mb=1", "--steps=1000", "--rounds=1",
                 f"--dir={tmp_path / 'work'}", f"--json={out}", timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "Training on the big text (first run, 1,000 updates)..." in r.stderr
  assert r.stdout.startswith("Texts: 3 MB and 1 MB (tiny-shakespeare repeated); 1,000 updates")
  rows = re.findall(r"^(big|small) +(first|later) +([\d.]+) s +([\d,]+) MB +([\d,]+)$",
                    r.stdout, re.M)
  assert [(a, b) for a, b, *_ in rows] == [("big", "first"), ("big", "later"),
                                           ("small", "first"), ("small", "later")], r.stdout
  for phrase in ("Token pass (the first run's, both passes): ", "Training speed, big text "
                 "against small (medians of the later runs): ", "Peak memory, big text against "
                 "small: ", "The feed: "):
    assert phrase in r.stdout, r.stdout
  saved = json.loads(out.read_text())
  assert saved["big_bytes"] == 3 << 20 and saved["small_bytes"] == 1 << 20
  assert saved["first"]["big"]["token_pass_mb_per_s"] > 0
  assert saved["later"]["big"][0]["token_pass_mb_per_s"] is None  # the token file was used
  for run in [*saved["first"].values(), *saved["later"]["big"], *saved["later"]["small"]]:
    assert 0 < run["to_data_line_s"] < run["to_first_update_s"] < run["wall_s"]
    assert run["peak_rss_bytes"] > 50 << 20 and run["chars_per_s"] > 0
  assert 0 < saved["feed_seconds_per_call"] < saved["call_seconds"]
  assert (tmp_path / "work" / "cache").is_dir()  # --dir keeps what it made


def _results_command(module: str) -> list[str]:
  """The one `python -m <module> ...` line of docs/results.md, as python -m's arguments."""
  with open(f"{REPO}/docs/results.md", encoding="utf-8") as f:
    (line,) = [l for l in f.read().splitlines() if l.startswith(f"python -m {module}")]
  return shlex.split(line)[2:]


def _run_shrunk(module: str, out, *args: str):
  """`python -m module args --json=out`, which must succeed: (the result, the JSON)."""
  r = run_module(module, *args, f"--json={out}", timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return r, json.loads(out.read_text())


@pytest.mark.slow
def test_the_dynamic_speed_benchmark_times_both_scores(tmp_path):
  """docs/results.md's command, shrunk to a small network: the lines and a JSON of the same."""
  assert _results_command("benchmarks.dynamic") == ["benchmarks.dynamic_speed"]
  r, saved = _run_shrunk("benchmarks.dynamic_speed", tmp_path / "dyn.json", "--layers=1",
                         "--hidden=32", "--chars=600")
  assert saved["network"] == "1 layer of lstm, H = 32" and saved["stat_chars"] == 128_000
  assert r.stdout.startswith("1 layer of lstm, H = 32, float64, one stream; 599 predictions")
  assert f"  dynamic score        {saved['dynamic_chars_per_s']:,} chars/s" in r.stdout
  assert 0 < saved["dynamic_chars_per_s"] < saved["static_chars_per_s"]
  assert f"about {saved['tail_dynamic_seconds']:,} s" in r.stdout


@pytest.mark.slow
def test_the_page_benchmark_opens_the_page_and_writes(tmp_path):
  """docs/results.md's command, shrunk to a small network: the lines and a JSON of the same."""
  assert _results_command("benchmarks.page")[0] == "benchmarks.page_speed"
  from tools import browser  # pylint: disable=g-import-not-at-top
  if browser.missing():  # CI installs the browser (.ci/run): there, a missing one is a failure
    (pytest.fail if os.environ.get("CI") else pytest.skip)(browser.missing())
  r, saved = _run_shrunk("benchmarks.page_speed", tmp_path / "page.json", "--layers=1",
                         "--hidden=32", "--rounds=1")
  assert saved["network"] == "1 layer of lstm, H = 32" and saved["rounds"] == 1
  assert "writes what sample --temperature=0 writes" in saved["write"]
  assert f"  page                 {saved['page_bytes']:,} bytes" in r.stdout
  assert f"  write 500 characters {saved['write_500_s']:.2f} s" in r.stdout
  assert 0 < saved["open_s"] < 60 and 0 < saved["write_500_s"] < 60


@pytest.mark.slow
def test_the_cells_table_times_both_dtypes(tmp_path):
  """--dtypes=float32,bfloat16: ours (hand BPTT, jax.grad) in both, the products bound in float32,
  PyTorch in both where installed (autocast); JSON rows with the fields the issue names."""
  out = tmp_path / "speed.json"
  r = run_module("benchmarks.train_speed", "--methods=jax fused (20/call)", "--steps=20",
                 "--repeats=1", "--cells=gru", "--cell_layers=2", "--cell_hidden=8",
                 "--cell_batch=2", "--cell_seq=5", "--cell_steps=2",
                 "--dtypes=float32,bfloat16", f"--json={out}", timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "Adam, mean loss, float32 and bfloat16" in r.stdout
  rows = json.loads(out.read_text())["cells"]
  ours = [(row["method"], row["dtype"]) for row in rows if "jax" in row["method"]]
  assert ours == [("gru jax fused, hand BPTT", "float32"), ("gru jax fused, jax.grad", "float32"),
                  ("gru jax fused, hand BPTT, bfloat16", "bfloat16"),
                  ("gru jax fused, jax.grad, bfloat16", "bfloat16")]
  for row in rows:
    assert (row["cell"], row["layers"], row["hidden"], row["batch"], row["seq"]) == (
        "gru", 2, 8, 2, 5) and row["ms_per_update"] > 0
  pytorch = [row["dtype"] for row in rows if "PyTorch" in row["method"]]
  assert pytorch == ["float32", "bfloat16"] or "torch is not installed" in r.stdout
  bad = run_module("benchmarks.train_speed", "--dtypes=float16", "--cells=")
  assert bad.returncode != 0 and "--dtypes takes float32 and bfloat16" in bad.stderr
