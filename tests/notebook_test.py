"""experiments/assignment4.ipynb: kept without outputs, and run top to bottom in a fresh kernel.

The run is short (300 updates on a small text), its parameters set the way papermill sets
them (a cell inserted after the one tagged "parameters"), in a kernel of this very Python
(a kernelspec written to a temporary JUPYTER_PATH). Its outputs are checked, and compared
with the command lines' for the same settings: `train --flagfile=experiments/goblet.flags`
must give the same loss at every update, the same text evolution and passage, and `sample
--words` the same counts.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from jax_charrnn import notebook
from jax_charrnn.errors import UserError

from helpers import REPO, TINY_TEXT, run_module, write_text

NOTEBOOK = os.path.join(REPO, "experiments", "assignment4.ipynb")
KERNEL = "jax_charrnn_test"

# A short run: a few hundred updates, a small gradient check, short texts.
SHORT = dict(NUM_STEPS=300, PLOT_EVERY=100, REPORT_EVERY=100, SAMPLE_LENGTH=50,
             PASSAGE_LENGTH=300, GRADCHECK_ENTRIES=10, NUM_PASSAGES=5, WORDS_LENGTH=200)
WORDS = ["harry", "hermione", "ron", "dumbledore"]


def read_notebook() -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOK, as_version=4)


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
  (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
  return cell


def text_of(cell: nbformat.NotebookNode) -> str:
  return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def images_of(cell: nbformat.NotebookNode) -> list[bytes]:
  return [base64.b64decode(o.data["image/png"]) for o in cell.outputs if "image/png" in o.get(
      "data", {})]


def with_parameters(nb: nbformat.NotebookNode, **values) -> nbformat.NotebookNode:
  """The notebook with papermill's injected cell: `values` after the "parameters" cell."""
  index = nb.cells.index(tagged(nb, "parameters"))
  source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={
      "tags": ["injected-parameters"]}))
  return nb


def execute(nb: nbformat.NotebookNode, cwd, monkeypatch) -> nbformat.NotebookNode:
  """Runs every cell in a fresh kernel of this Python, in `cwd`; a failing cell raises."""
  kernels = cwd / "jupyter" / "kernels" / KERNEL
  kernels.mkdir(parents=True)
  (kernels / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "jax_charrnn tests", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(cwd / "jupyter"))  # searched before any other place
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  NotebookClient(nb, timeout=600, kernel_name=KERNEL,
                 resources={"metadata": {"path": str(cwd)}}).execute()
  return nb


def test_the_committed_notebook_has_no_outputs_and_its_parameters_are_tagged():
  nb = read_notebook()
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  strip = "strip it: nbstripout experiments/assignment4.ipynb (or `nbstripout --install` once)"
  assert code and all(c.outputs == [] and c.execution_count is None for c in code), strip
  assert all(set(c.metadata) <= {"tags"} for c in nb.cells), strip  # no execution timings
  assert nb.metadata.kernelspec.name == "python3"
  params = tagged(nb, "parameters").source
  for name in ["DATA_PATH", "EPOCHS", "NUM_STEPS", "SEED", "LOWERCASE", *SHORT]:
    assert re.search(rf"^{name} = ", params, re.M), name
  assert re.search(r"^EPOCHS = 7 ", params, re.M) and re.search(r"^NUM_STEPS = None ", params,
                                                                   re.M)


@pytest.mark.slow
def test_the_notebook_runs_short_and_prints_what_the_command_lines_print(tmp_path, monkeypatch):
  book = write_text(tmp_path / "goblet_book.txt", TINY_TEXT * 4)
  nb = with_parameters(read_notebook(), **SHORT)
  nb.cells.append(nbformat.v4.new_code_cell(  # what the test compares beyond the printed text
      "import json\njson.dump({'losses': losses.tolist(), 'smooth': smooth.tolist(), "
      "'config': config.to_dict()}, open('results.json', 'w'))"))
  execute(nb, tmp_path, monkeypatch)
  results = json.loads((tmp_path / "results.json").read_text())
  losses = np.asarray(results["losses"], np.float32)
  smooth = np.asarray(results["smooth"], np.float32)

  # The kernel was this Python (the project's environment), and the book was found.
  setup = next(c for c in nb.cells if "sys.executable" in c.source)
  assert f"Python: {sys.executable}\n" in text_of(setup)
  assert results["config"]["data_path"] == "goblet_book.txt"
  # The gradient check: 15 relative errors, every one <= 1e-6.
  table = text_of(tagged(nb, "gradcheck"))
  errors = [float(x) for x in re.findall(r"(\d\.\d\de[-+]\d\d) (?:ok|FAIL)", table)]
  assert len(errors) == 15 and max(errors) <= 1e-6, table
  assert "PASS: all 15 relative errors <= 1e-06" in table
  # The loss falls; the plot is an image, drawn live and again with the results.
  assert len(losses) == SHORT["NUM_STEPS"]
  assert losses[-100:].mean() < 0.8 * losses[:100].mean(), (losses[:100].mean(),
                                                             losses[-100:].mean())
  results_text = text_of(tagged(nb, "results"))
  assert (f"of the last 100: {losses[-100:].mean():.3f}" in results_text and
          f"smooth loss after 300 updates: {smooth[-1]:.3f}" in results_text), results_text
  for tag in ("training", "results"):
    (png,) = images_of(tagged(nb, tag))
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

  # The same settings on the command line: goblet.flags (the course's) with the short run's.
  # The divergence guard is off: it can stop a run but never changes its numbers, and the
  # notebook has none (on this small text the first chunk losses jump to 3x the first one).
  workdir = tmp_path / "run"
  train = run_module("jax_charrnn.train", "--flagfile=experiments/goblet.flags",
                     f"--data_path={book}", "--num_steps=300", "--report_every=100",
                     "--sample_length=50", "--passage_length=300", "--max_loss_ratio=0",
                     "--report_gradcheck_entries=0", f"--workdir={workdir}")
  assert train.returncode == 0, train.stderr[-3000:]
  per_update = np.fromfile(workdir / "losses.f32", "<f4").reshape(-1, 2)
  np.testing.assert_array_equal(per_update[:, 0], losses)  # every update's loss, to the bit
  np.testing.assert_array_equal(per_update[:, 1], smooth)
  # The text's evolution and the best passage: the command line's files, character for character.
  assert text_of(tagged(nb, "evolution")) == (workdir / "samples.txt").read_text("utf-8")
  passage = (workdir / "best_passage.txt").read_text("utf-8")
  assert text_of(tagged(nb, "passage")) == passage and len(passage) == 300 + 1
  # Words of interest: `sample --words` on the command line's run prints the same lines.
  sample = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--num_samples=5",
                      "--length=200", f"--words={','.join(WORDS)}")
  assert sample.returncode == 0, sample.stderr[-3000:]
  assert text_of(tagged(nb, "words")) == sample.stdout
  for word in WORDS:
    assert re.search(rf"^  '{word}': in [0-5] of 5 passages \(\d+%\), \d+ times$",
                     sample.stdout, re.M), sample.stdout


@pytest.mark.slow
def test_without_the_book_the_notebook_says_so_and_reads_the_builtin_corpus(tmp_path,
                                                                             monkeypatch):
  nb = with_parameters(read_notebook(), DATA_PATH="goblet_book.txt")
  data_cell = next(c for c in nb.cells if "walk.corpus_of(" in c.source)
  nb.cells = nb.cells[:nb.cells.index(data_cell) + 1]  # up to reading the data
  execute(nb, tmp_path, monkeypatch)
  out = text_of(nb.cells[-1])
  assert ("'goblet_book.txt' was not found beside the notebook or in the repository root: "
          "training on the built-in corpus (CPython's pydoc_data.topics) instead") in out, out
  assert re.search(r"Data: built-in corpus \(CPython's pydoc_data\.topics\), [\d,]+ characters, "
                   r"K = \d+ distinct", out), out


def _values(**changes):
  params = tagged(read_notebook(), "parameters").source
  values = {}
  exec(params, {}, values)  # the committed cell's own values
  return {**values, **changes}


def test_the_parameters_cell_reads_what_papermill_passes_as_text():
  got = notebook.check(_values(NUM_STEPS="300", LOWERCASE="no", SEED="7", EPOCHS=7.0,
                               GRADCHECK_ENTRIES="None", WORDS="harry, ron", PLOT_EVERY="10_000"))
  assert got["NUM_STEPS"] == 300 and got["LOWERCASE"] is False and got["SEED"] == 7
  assert got["EPOCHS"] == 7 and got["GRADCHECK_ENTRIES"] is None and got["PLOT_EVERY"] == 10_000
  assert got["WORDS"] == ["harry", "ron"]
  assert notebook.check(_values(WORDS="the"))["WORDS"] == ["the"]  # a word, not its letters
  assert notebook.check(_values(LOWERCASE="True"))["LOWERCASE"] is True
  assert notebook.check(_values()) == _values()  # the committed values pass as they are


@pytest.mark.parametrize("name, value, says", [
    ("NUM_STEPS", "three hundred", "NUM_STEPS takes a whole number of at least 1, or None"),
    ("LOWERCASE", "maybe", "LOWERCASE takes True or False"),
    ("GRADCHECK_ENTRIES", -5, "GRADCHECK_ENTRIES takes a whole number of at least 1"),
    ("EPOCHS", 2.5, "EPOCHS takes a whole number"),
    ("NUM_STEPS", True, "NUM_STEPS takes a whole number"),
    ("INIT_DIST", "gauss", "INIT_DIST takes one of 'normal', 'uniform', 'pytorch'"),
    ("WORDS", [1, 2], "WORDS takes a list of words"),
    ("WORDS", " , ", "WORDS takes a list of words"),
])
def test_a_bad_parameter_is_one_sentence_naming_it(name, value, says):
  with pytest.raises(UserError, match=re.escape(says)) as e:
    notebook.check(_values(**{name: value}))
  assert f"{name} = {value!r} in the parameters cell" in str(e.value)
  with pytest.raises(UserError, match="lacks SEED"):
    notebook.check({k: v for k, v in _values().items() if k != "SEED"})


@pytest.mark.slow
def test_the_notebook_stops_at_a_bad_parameter_before_any_work(tmp_path, monkeypatch):
  nb = with_parameters(read_notebook(), GRADCHECK_ENTRIES=-5)
  with pytest.raises(CellExecutionError, match="GRADCHECK_ENTRIES = -5 in the parameters cell"):
    execute(nb, tmp_path, monkeypatch)
  ran = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
  assert "notebook.check" in ran[-1].source  # the set-up cell, before the data is read
