"""The docs are a map that holds: README a front door and WORKSPACE a map of bounded length,
every link landing on a file and a heading that exist, README one link from each thing a
newcomer comes for, and every command the pages show naming real flags with allowed values."""

import glob
import importlib
import os
import re
import shlex

import pytest
from absl import flags

from jax_charrnn import config as config_lib

from helpers import REPO

PAGES = ["README.md", "WORKSPACE.md", *sorted(os.path.relpath(p, REPO) for p in
                                              glob.glob(os.path.join(REPO, "docs", "*.md")))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _read(page: str) -> str:
  with open(os.path.join(REPO, page), encoding="utf-8") as f:
    return f.read()


def slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
  return {slug(m) for m in re.findall(r"^#+ (.+)$", _read(page), re.M)}


def links(page: str) -> list[tuple[str, str]]:
  """(file relative to the repository, anchor or "") of every relative link on `page`."""
  out = []
  for target in LINK.findall(_read(page)):
    if re.match(r"[a-z]+:", target):
      continue  # a web address
    path, _, anchor = target.partition("#")
    path = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    out.append((path, anchor))
  return out


def test_readme_is_a_front_door_and_workspace_a_map():
  assert len(_read("README.md").splitlines()) <= 250
  assert len(_read("WORKSPACE.md").splitlines()) <= 300


def test_the_slug_is_githubs():
  assert slug("Schedules, clipping and AWD-LSTM's regularisers") == \
      "schedules-clipping-and-awd-lstms-regularisers"
  assert slug("Adding a cell") == "adding-a-cell"


@pytest.mark.parametrize("page", PAGES)
def test_every_link_lands_on_a_file_and_a_heading_that_exist(page):
  for path, anchor in links(page):
    assert os.path.exists(os.path.join(REPO, path)), (page, path)
    if anchor and path.endswith(".md"):
      assert anchor in anchors(path), (page, path, anchor)


def test_the_link_checker_sees_a_broken_link():
  assert ("docs/nowhere.md", "") not in links("README.md")
  assert "no-such-heading" not in anchors("docs/cells.md")


def _section(page: str, anchor: str) -> str:
  """The text of `page` under the heading whose anchor is `anchor`, to the next heading of
  the same or a higher level."""
  text = _read(page)
  for m in re.finditer(r"^(#+) (.+)$", text, re.M):
    if slug(m.group(2)) == anchor:
      rest = text[m.end():]
      end = re.search(rf"^#{{1,{len(m.group(1))}}} ", rest, re.M)
      return rest[:end.start()] if end else rest
  raise AssertionError(f"no heading #{anchor} in {page}")


# What a newcomer comes for: README links there in one step, and the page holds it.
DESTINATIONS = {
    "train the course's model": ("docs/course.md", "", "--flagfile=experiments/goblet.flags"),
    "open the notebook": ("docs/course.md", "the-notebook",
                          "jupyter lab experiments/assignment4.ipynb"),
    "reproduce the benchmark table": ("docs/results.md", "tiny-shakespeare-nanogpts-split",
                                      "experiments/shakespeare_best.flags"),
    "add a cell": ("docs/cells.md", "adding-a-cell", "cells/__init__.py"),
}


@pytest.mark.parametrize("goal", DESTINATIONS)
def test_readme_reaches_each_newcomers_goal_in_one_link(goal):
  path, anchor, shown = DESTINATIONS[goal]
  assert (path, anchor) in links("README.md"), goal
  assert shown in (_section(path, anchor) if anchor else _read(path)), goal


def commands(page: str) -> list[list[str]]:
  """Every `python -m jax_charrnn.X ...` line of the page's sh blocks, as argv (comments,
  continuations and a trailing & handled; lines with placeholders skipped)."""
  out = []
  for block in re.findall(r"```sh\n(.*?)```", _read(page), re.S):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.strip().rstrip("&").strip()
      if line.startswith("python -m jax_charrnn.") and "..." not in line and "[" not in line:
        out.append(shlex.split(line, comments=True)[2:])
  return out


SHOWN = [(page, argv) for page in PAGES for argv in commands(page)]


def test_the_pages_show_commands_of_every_kind():
  kinds = {argv[0] for _, argv in SHOWN}
  assert kinds >= {f"jax_charrnn.{c}" for c in ("train", "sweep", "sample", "evaluate", "export",
                                                "gradcheck", "visualize")}, kinds


@pytest.mark.parametrize("page,argv", SHOWN, ids=[f"{p}: {' '.join(a)[:70]}" for p, a in SHOWN])
def test_every_command_shown_names_real_flags_with_allowed_values(page, argv, monkeypatch):
  monkeypatch.chdir(REPO)  # flag files are read relative to the current directory
  module = importlib.import_module(argv[0])
  fv = flags.FlagValues()
  module.define_flags(fv)
  fv(["command", *argv[1:]])
  if argv[0] in ("jax_charrnn.train", "jax_charrnn.sweep"):  # and the settings hold together
    config_lib.from_flags(config_lib.TrainConfig, fv)


def test_a_misspelt_flag_fails_that_check(monkeypatch):
  monkeypatch.chdir(REPO)
  from jax_charrnn import train
  fv = flags.FlagValues()
  train.define_flags(fv)
  with pytest.raises(flags.Error):
    fv(["command", "--flagfile=experiments/quickstart.flags", "--hidden_sise=3"])
