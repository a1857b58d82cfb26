"""The package's shape: imports run one way (no module imports, directly or through others, a
module that imports it back), no function is too long to read at once, and no record holds
so many fields that it wants splitting (the declared settings, TrainConfig, aside).

Imports inside functions count: a lazy import that climbs back up is a cycle too.
"""

import ast
import os

from helpers import REPO

PACKAGE = "jax_charrnn"
LONGEST_FUNCTION = 60  # lines, docstring included
MOST_FIELDS = 14       # annotated fields of a class (TrainConfig: every setting, declared once)
SETTINGS = {"jax_charrnn.config.TrainConfig"}


def modules(root: str) -> dict[str, str]:
  """{module name: file} for every .py file under root/PACKAGE."""
  out = {}
  for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = path
  return out


def imports(tree: ast.AST, known: set[str], this: str) -> set[str]:
  """The package's modules that `tree` imports, at module level or inside functions."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      assert not node.level, f"{this}: relative import (the package imports absolutely)"
      base = node.module
      for alias in node.names:
        name = f"{base}.{alias.name}"
        found.add(name if name in known else base)
    elif isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
  return {m for m in found if m in known and m != this}


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
  """{module: the modules it imports} from {module: source text}."""
  known = set(sources)
  return {m: imports(ast.parse(src), known, m) for m, src in sources.items()}


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
  """Pairs (a, b) where a imports b and b reaches a again: every edge that closes a cycle."""
  def reach(start):
    seen, todo = set(), [start]
    while todo:
      for nxt in edges[todo.pop()]:
        if nxt not in seen:
          seen.add(nxt)
          todo.append(nxt)
    return seen
  return sorted((a, b) for a in edges for b in edges[a] if a in reach(b))


def _package_sources() -> dict[str, str]:
  out = {}
  for m, path in modules(REPO).items():
    with open(path, encoding="utf-8") as f:
      out[m] = f.read()
  return out


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
  sources = {
      "jax_charrnn": "",
      "jax_charrnn.low": "import numpy\n",
      "jax_charrnn.mid": "from jax_charrnn import low\n",
      "jax_charrnn.top": "from jax_charrnn import mid\n",
  }
  assert cycles(graph(sources)) == []
  sources["jax_charrnn.low"] += "def f():\n  from jax_charrnn.top import g\n"
  assert cycles(graph(sources)) == [("jax_charrnn.low", "jax_charrnn.top"),
                                    ("jax_charrnn.mid", "jax_charrnn.low"),
                                    ("jax_charrnn.top", "jax_charrnn.mid")]


def test_imports_run_one_way():
  edges = graph(_package_sources())
  assert "jax_charrnn.hostloop" in edges["jax_charrnn.trainer"]  # the graph is really read
  assert cycles(edges) == []


def test_no_function_is_longer_than_a_screen():
  long = []
  for m, src in _package_sources().items():
    for node in ast.walk(ast.parse(src)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > LONGEST_FUNCTION:
          long.append(f"{m}.{node.name}: {lines} lines")
  assert not long, long


def fields(tree: ast.AST) -> dict[str, int]:
  """{class name: its annotated fields} of a module's classes."""
  return {node.name: sum(isinstance(s, ast.AnnAssign) for s in node.body)
          for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def test_the_field_counter_counts_annotated_fields():
  assert fields(ast.parse("class A:\n  x: int\n  y: str = ''\n  z = 3\n")) == {"A": 2}


def test_no_record_has_too_many_fields():
  big = [f"{m}.{name}: {count} fields"
         for m, src in _package_sources().items()
         for name, count in fields(ast.parse(src)).items()
         if count > MOST_FIELDS and f"{m}.{name}" not in SETTINGS]
  assert not big, big
