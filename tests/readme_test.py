"""README's commands, as README shows them: its two opening commands name what exists, and the
quickstart prints what README says it prints (the stable figures exactly; the losses and speeds,
which depend on the CPU and its load, in their format)."""

import os
import re
import shlex

import pytest

from helpers import REPO, run_module

README = os.path.join(REPO, "README.md")


def _readme() -> str:
  with open(README, encoding="utf-8") as f:
    return f.read()


def _quickstart_block() -> list[str]:
  text = _readme()
  section = text[text.index("## What the quickstart prints and leaves"):]
  block = section[section.index("```text\n") + 8:]
  return block[:block.index("```")].strip().splitlines()


NUMBER = r"[\d,]+(\.\d+)?"
FORMATS = {  # what each kind of line looks like; the parts that vary as numbers
    "Data:": r"Data: .*",
    "Compiled": rf"Compiled the training program \(1000 updates per call\) in {NUMBER} s\.",
    "step": (rf"step (\d+)/55794 \(epoch (\d+\.\d\d), (\d+\.\d)%\)  loss {NUMBER}  smooth "
             rf"{NUMBER}  {NUMBER} chars/s  ETA \d+m\d\ds"),
    "sample": r"sample at step \d+:",
    "Writing": r"Writing the report \(loss plot, best passage(, gradient check)?\)\.\.\.",
    "Done:": (rf"Done: 55794 updates, smooth loss {NUMBER}, best smooth loss {NUMBER} \(the "
              rf"parameters after {NUMBER} updates\); {NUMBER} s of training \({NUMBER} "
              r"chars/s\)\. Report: runs/quickstart/report\.md"),
}


def _kind(line: str) -> str | None:
  return next((k for k in FORMATS if line.startswith(k)), None)


def test_the_opening_commands_install_and_run_what_exists():
  text = _readme()
  assert "pip install -e . && python -m jax_charrnn.train --flagfile=experiments/quickstart.flags" \
      in text
  assert "pip install -e '.[test]' && pytest -q" in text
  assert os.path.exists(os.path.join(REPO, "experiments", "quickstart.flags"))
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    assert "pip install -q -e '.[test]' && pytest -q" in f.read()  # CI runs README's command


def test_every_line_readme_shows_has_a_format():
  shown = [line for line in _quickstart_block() if line != "..."]
  assert [k for k in map(_kind, shown) if k] and all(
      _kind(line) is None or re.fullmatch(FORMATS[_kind(line)], line) for line in shown), shown


@pytest.mark.slow
def test_the_quickstart_prints_what_readme_shows(tmp_path):
  r = run_module("jax_charrnn.train", "--flagfile=experiments/quickstart.flags",
                 f"--workdir={tmp_path / 'quickstart'}", "--report_gradcheck_entries=0",
                 timeout=900)
  assert r.returncode == 0, r.stderr[-2000:]
  printed = r.stdout.replace(str(tmp_path / "quickstart"), "runs/quickstart").splitlines()
  shown = [line for line in _quickstart_block() if _kind(line)]
  for line in shown:
    kind = _kind(line)
    twins = [p for p in printed if _kind(p) == kind]
    assert twins and all(re.fullmatch(FORMATS[kind], p) for p in twins), (kind, twins[:3])
    if kind == "Data:":  # the text, the vocabulary and the walk: the same everywhere
      assert line in printed
    if kind == "step":  # where the run stands at a step is the same everywhere
      where = line[:line.index("  loss")]
      assert any(p.startswith(where + "  loss") for p in printed), where


def _section_commands(heading: str, page: str = README) -> list[list[str]]:
  """The `python -m jax_charrnn.X ...` commands of the sh blocks under `heading`, as argv."""
  with open(page, encoding="utf-8") as f:
    text = f.read()
  section = text[text.index(heading):]
  section = section[:section.index("\n## ", 5)]
  commands = []
  for block in re.findall(r"```sh\n(.*?)```", section, re.S):
    for line in block.replace("\\\n", " ").splitlines():
      if line.startswith("python -m jax_charrnn."):
        commands.append(shlex.split(line)[2:])
  return commands


@pytest.mark.slow
def test_the_schedules_and_regularisers_commands_run_as_shown(tmp_path):
  """docs/cells.md's AWD-LSTM commands with every setting as shown; the training run shortened
  to 40 updates (its warm-up of 100 to 10, the same shape: warm-up, then the cosine) and the
  gradient check to 20 entries per parameter."""
  commands = _section_commands("## Schedules, clipping and AWD-LSTM's regularisers",
                               os.path.join(REPO, "docs", "cells.md"))
  assert [c[0] for c in commands] == ["jax_charrnn.train", "jax_charrnn.gradcheck"], commands
  train, check = commands
  r = run_module(*train, "--num_steps=40", "--warmup_steps=10", "--steps_per_call=10",
                 "--eval_every=20", "--sample_every=0", "--report_every=0",
                 "--report_gradcheck_entries=0", f"--workdir={tmp_path / 'awd'}", timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert r.stdout.strip().splitlines()[-1].startswith("Done: 40 updates"), r.stdout[-1000:]
  assert "held-out" in r.stdout and "diverged" not in r.stdout + r.stderr
  r = run_module(*check, "--entries=20", timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
  assert "PASS: all" in r.stdout and "FAIL" not in r.stdout
