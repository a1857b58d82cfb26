"""README's benchmark command for the cells table runs and prints what it says: the trainer's
step (hand BPTT), jax.grad's and, where torch is installed, PyTorch's, each with its ratio to the
hand BPTT and its share of the measured matmul peak (shrunk: the shapes and block sizes below)."""

import json
import re
import shlex

import pytest

from helpers import REPO, run_module

SMALL = {"--cell_hidden": "16", "--cell_batch": "4", "--cell_seq": "10", "--cell_steps": "2",
         "--repeats": "1"}


def _readme_cells_command() -> list[str]:
  with open(f"{REPO}/README.md", encoding="utf-8") as f:
    text = f.read()
  section = text[text.index("## Speed"):]
  block = section[section.index("```sh\n") + 6:]
  block = block[:block.index("```")].replace("\\\n", " ")
  lines = [l for l in block.splitlines() if "--cells=" in l]
  assert len(lines) == 1, lines
  return shlex.split(lines[0].split("  #")[0])[2:]


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
  assert names[:2] == ["lstm jax fused, hand BPTT", "lstm jax fused, jax.grad"], names
  assert rows[0]["x_vs_hand_bptt"] == 1.0
  for row in rows:
    assert row["us_per_update"] > 0 and 0 < row["percent_of_peak"]
    assert abs(row["chars_per_s"] - 4 * 10 / row["us_per_update"] * 1e6) < 1e-6 * row["chars_per_s"]
  torch_rows = [n for n in names if n.startswith("lstm torch")]
  assert len(torch_rows) == 1 or "torch is not installed" in r.stdout, names
  assert re.search(r"matmul peak measured here: \d+ GFLOP/s", r.stdout)
