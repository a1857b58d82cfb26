"""Mutation testing of the numeric core with cosmic-ray: one module per run.

    python -m mutation.run jax_charrnn/optim.py              # the module's mutants, a report
    python -m mutation.run jax_charrnn/optim.py --survivors  # after new tests: the survivors again
    python -m mutation.run jax_charrnn/optim.py --report     # the last run's report only
    python -m mutation.run jax_charrnn/optim.py --count      # how many mutants, nothing run
    python -m mutation.run --summary                         # every module: first run and now
    python -m mutation.run --list                            # the modules covered, their tests

A mutant is one small change to the source (``+`` -> ``-``, ``<`` -> ``<=``, a number
plus or minus one, ``True`` -> ``False``, a loop that runs zero times, ...). Each is
applied to a private copy of the tree and the module's tests run against it
(``pytest -x``): a failing test kills the mutant, a mutant every test survives is a
behaviour nothing checks. Equivalent mutants (changes that cannot alter any result)
are listed with their reasons in mutation/equivalent.toml and left out of the score.

Not part of CI (a module takes minutes to an hour on two cores); docs/results.md
records the scores. Needs ``pip install -e '.[mutation]'`` (cosmic-ray).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The numeric core and the tests that state its behaviour, the quickest to fail first
# (pytest -x stops at the first failure, so a killed mutant costs only the tests before
# it). ``functions`` limits a module with a command line in it to its numeric part (the
# line ranges of those top-level functions and classes, found when the run starts).
MODULES: dict[str, dict] = {
    "jax_charrnn/data.py": {"tests": ["tests/data_test.py"]},
    "jax_charrnn/model.py": {"tests": ["tests/model_test.py", "tests/bptt_test.py",
                                       "tests/cells_test.py", "tests/generate_test.py"]},
    "jax_charrnn/cells/__init__.py": {"tests": ["tests/cell_plugin_test.py",
                                                "tests/cells_test.py"]},
    "jax_charrnn/cells/ops.py": {"tests": ["tests/bptt_test.py", "tests/cells_test.py",
                                           "tests/model_test.py"]},
    "jax_charrnn/cells/rnn.py": {"tests": ["tests/bptt_test.py", "tests/course_fixture_test.py",
                                           "tests/cells_test.py"]},
    "jax_charrnn/cells/lstm.py": {"tests": ["tests/cells_test.py"]},
    "jax_charrnn/cells/gru.py": {"tests": ["tests/cells_test.py"]},
    "jax_charrnn/bptt.py": {"tests": ["tests/bptt_test.py", "tests/cells_test.py"]},
    "jax_charrnn/optim.py": {"tests": ["tests/optim_test.py", "tests/loop_test.py"]},
    "jax_charrnn/loop.py": {"tests": ["tests/course_fixture_test.py", "tests/reference_test.py",
                                      "tests/optim_test.py", "tests/loop_test.py"]},
    "jax_charrnn/generate.py": {"tests": ["tests/generate_test.py", "tests/model_test.py"]},
    "jax_charrnn/score.py": {"tests": ["tests/score_test.py", "tests/evaluate_test.py"],
                             "functions": ["Score", "_block_nats", "score_ids"]},
}

# One mutation per operator site, as mutmut makes them (cosmic-ray would otherwise
# turn every ``+`` into eleven operators, most of them type errors), plus the
# boundary shifts of comparisons. Left out: VariableReplacer/VariableInserter
# (random names), ExceptionReplacer (error paths, not numbers) and RemoveDecorator
# (removing @jax.jit or @dataclass changes speed or fails at import, not maths).
OPERATORS = [
    r"core/ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_FloorDiv"
    r"|Pow_Mul)$",
    r"core/ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt"
    r"|Is_IsNot|IsNot_Is)$",
    r"core/ReplaceUnaryOperator_(USub_UAdd|Delete_Not)$",
    r"core/(AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr"
    r"|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak|NumberReplacer"
    r"|ZeroIterationForLoop)$",
]

TIMEOUT_S = 240.0


def _operators_to_exclude() -> list[str]:
  out = subprocess.run([_tool("cosmic-ray"), "operators"], capture_output=True, text=True,
                       check=True).stdout.split()
  keep = [re.compile(p) for p in OPERATORS]
  return [re.escape(op) + "$" for op in out if not any(k.match(op) for k in keep)]


def _tool(name: str) -> str:
  path = Path(sys.executable).parent / name
  if not path.exists():
    sys.exit(f"{name} is not installed in this environment: pip install -e '.[mutation]'.")
  return str(path)


def _line_ranges(module: str, functions: list[str]) -> list[str]:
  """'a-b' line ranges of the named top-level functions and classes of ``module``."""
  import ast  # pylint: disable=g-import-not-at-top
  tree = ast.parse((ROOT / module).read_text())
  ranges = [f"{node.lineno}-{node.end_lineno}" for node in tree.body
            if getattr(node, "name", None) in functions]
  if len(ranges) != len(functions):
    sys.exit(f"{module}: not every one of {functions} was found")
  return ranges


def _copy_tree(dest: Path) -> None:
  """The tracked and new (not ignored) files of the checkout, as they are now."""
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
  for f in files:
    src = ROOT / f
    if src.is_file():
      (dest / f).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, dest / f)


def _session_path(module: str) -> Path:
  out = ROOT / ".mutation"
  out.mkdir(exist_ok=True)
  return out / (module.replace("/", "_").removesuffix(".py") + ".sqlite")


def _source_digest(module: str) -> str:
  import hashlib  # pylint: disable=g-import-not-at-top
  return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def _rerun_survivors(session: Path, module: str) -> None:
  """Marks the surviving mutants of the last run as not run (its killed ones stay killed:
  adding tests cannot revive a mutant), keeping the first run's results as 'before'."""
  import sqlite3  # pylint: disable=g-import-not-at-top
  stamp = session.with_suffix(".json")
  if not session.exists() or not stamp.exists():
    sys.exit(f"no finished mutation run of {module} to go on from: run it whole first")
  if json.loads(stamp.read_text())["source"] != _source_digest(module):
    sys.exit(f"{module} changed since its last mutation run (the mutants' places moved): "
             "run it whole again")
  before = session.with_suffix(".before.sqlite")
  if not before.exists():
    shutil.copy2(session, before)
  equivalent = _equivalent(module)
  rerun = [item["job_id"] for item, result in _results(session)
           if result is not None and result.get("test_outcome") == "survived"
           and not any(_is_equivalent(e, item["mutations"][0]["operator_name"],
                                      *_mutated_line(item, result)) for e in equivalent)]
  with sqlite3.connect(session) as db:  # no results = to be run by `cosmic-ray exec`
    db.executemany("DELETE FROM work_results WHERE job_id = ?", [(j,) for j in rerun])


def run(module: str, count_only: bool = False, survivors_only: bool = False) -> None:
  spec = MODULES[module]
  work = Path(tempfile.mkdtemp(prefix="mutation-"))
  # Counting leaves the module's recorded results alone.
  session = work / "count.sqlite" if count_only else _session_path(module)
  if survivors_only:
    _rerun_survivors(session, module)
  elif not count_only:
    session.unlink(missing_ok=True)
    session.with_suffix(".before.sqlite").unlink(missing_ok=True)
  try:
    _copy_tree(work)
    tests = " ".join(spec["tests"])
    # -x: the first failing test kills the mutant; -n0: one process (the second core
    # is for a second module's run); -m "not slow": no command-line subprocesses.
    command = (f"{sys.executable} -m pytest -x -q -n0 -p no:cacheprovider "
               f"-m 'not slow' {tests}")
    config = {
        "module-path": module,
        "timeout": TIMEOUT_S,
        "excluded-modules": [],
        "test-command": command,
        "distributor": {"name": "local"},
        "filters": {"operators-filter": {"exclude-operators": _operators_to_exclude()}},
    }
    if "functions" in spec:
      config["filters"]["line-filter"] = {"lines": {module: _line_ranges(module,
                                                                        spec["functions"])}}
    import toml  # pylint: disable=g-import-not-at-top  (cosmic-ray's own dependency)
    cfg = work / "cosmic-ray.toml"
    cfg.write_text(toml.dumps({"cosmic-ray": config}))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(ROOT / ".mutation" / "jax-cache"))
    # The copy, not an installed checkout, must be what the tests import.
    probe = subprocess.run([sys.executable, "-c", "import jax_charrnn, sys; "
                            "print(jax_charrnn.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not probe.startswith(str(work)):
      sys.exit(f"the tests would import {probe}, not the copy under test")
    cr = _tool("cosmic-ray")
    if not survivors_only:
      subprocess.run([cr, "init", str(cfg), str(session)], cwd=work, env=env, check=True)
      subprocess.run([_tool("cr-filter-operators"), str(session), str(cfg)], cwd=work,
                     env=env, check=True)
      if "functions" in spec:
        subprocess.run([_tool("cr-filter-lines"), "--config", str(cfg), str(session)],
                       cwd=work, env=env, check=True)
    if count_only:
      print(f"{module}: {_counts(session)['total']} mutants")
      return
    base = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True,
                          text=True)
    if base.returncode != 0:
      sys.exit("the tests fail on the unmutated copy:\n" + base.stdout[-3000:])
    print(f"{module}: {_counts(session)['pending']} mutants to run; tests: {tests}", flush=True)
    subprocess.run([cr, "exec", str(cfg), str(session)], cwd=work, env=env, check=True)
    session.with_suffix(".json").write_text(json.dumps({"source": _source_digest(module)}))
  finally:
    shutil.rmtree(work, ignore_errors=True)
  report(module)


def _results(session: Path) -> list[tuple[dict, dict | None]]:
  out = subprocess.run([_tool("cosmic-ray"), "dump", str(session)], capture_output=True,
                       text=True, check=True).stdout
  return [tuple(json.loads(line)) for line in out.splitlines() if line.strip()]


def _equivalent(module: str) -> list[dict]:
  path = ROOT / "mutation" / "equivalent.toml"
  entries = tomllib.loads(path.read_text()).get("mutant", []) if path.exists() else []
  return [e for e in entries if e["module"] in (module, "*")]


def _is_equivalent(entry: dict, operator: str, before: str, after: str) -> bool:
  """An entry names one mutant (before, after: the exact lines) or a kind of them
  (before_re, after_re: regular expressions matched against the whole lines; or
  changed_after_re: what precedes the changed characters, e.g. a key's index)."""
  if entry["operator"] != operator:
    return False
  if "changed_after_re" in entry:
    same = 0
    while same < min(len(before), len(after)) and before[same] == after[same]:
      same += 1
    return bool(re.search(entry["changed_after_re"] + "$", before[:same]))
  if "before_re" in entry:
    return bool(re.fullmatch(entry["before_re"], before) and
                re.fullmatch(entry["after_re"], after))
  return entry["before"] == before and entry["after"] == after


def _mutated_line(item: dict, result: dict) -> tuple[str, str]:
  """(the source line before, after) from the mutant's diff."""
  before = after = ""
  for line in (result.get("diff") or "").splitlines():
    if line.startswith("-") and not line.startswith("---"):
      before = line[1:].strip()
    elif line.startswith("+") and not line.startswith("+++"):
      after = line[1:].strip()
  return before, after


def _counts(session: Path, module: str | None = None) -> dict:
  rows = _results(session)
  equivalent = _equivalent(module) if module else []
  c = {"total": 0, "killed": 0, "survived": 0, "equivalent": 0, "pending": 0, "survivors": []}
  for item, result in rows:
    if result is not None and result.get("worker_outcome") == "skipped":
      continue
    c["total"] += 1
    if result is None:
      c["pending"] += 1
      continue
    mutation = item["mutations"][0]
    before, after = _mutated_line(item, result)
    if any(_is_equivalent(e, mutation["operator_name"], before, after) for e in equivalent):
      c["equivalent"] += 1
    elif result.get("test_outcome") == "survived":
      c["survived"] += 1
      c["survivors"].append((mutation["start_pos"][0], mutation["operator_name"], before,
                             after))
    else:  # killed, or the tests timed out / crashed on it (also a detection)
      c["killed"] += 1
  return c


def report(module: str) -> dict:
  session = _session_path(module)
  if not session.exists():
    sys.exit(f"no mutation session for {module}: run python -m mutation.run {module}")
  before = session.with_suffix(".before.sqlite")
  if before.exists():
    _print_counts(f"{module} (before)", _counts(before, module))
  c = _counts(session, module)
  _print_counts(module, c)
  for line, op, was, now in sorted(c["survivors"]):
    print(f"  survived line {line}: {op.removeprefix('core/')}\n      {was}\n   -> {now}")
  return c


def _print_counts(title: str, c: dict) -> None:
  scored = c["killed"] + c["survived"]
  score = 100.0 * c["killed"] / scored if scored else float("nan")
  print(f"{title}: {c['total']} mutants, {c['killed']} killed, {c['survived']} survived, "
        f"{c['equivalent']} equivalent (listed), {c['pending']} not run; "
        f"score {score:.1f}% of the non-equivalent")


def summary() -> None:
  """One line per module run so far: mutants, equivalent, killed/scored first and now."""
  print("| module | mutants | equivalent | first run: killed / scored | now: killed / scored |")
  print("|---|---|---|---|---|")
  totals = [0, 0, 0, 0, 0, 0]
  for module in MODULES:
    session = _session_path(module)
    if not session.exists():
      continue
    before = session.with_suffix(".before.sqlite")
    now = _counts(session, module)
    first = _counts(before, module) if before.exists() else now
    cols = [now["total"], now["equivalent"], first["killed"], first["killed"] + first["survived"],
            now["killed"], now["killed"] + now["survived"]]
    totals = [a + b for a, b in zip(totals, cols)]
    print(_summary_row(module, cols))
  print(_summary_row("**numeric core**", totals))


def _summary_row(name: str, c: list[int]) -> str:
  pct = lambda k, n: f"{100.0 * k / n:.1f}%" if n else "-"  # noqa: E731
  return (f"| {name} | {c[0]} | {c[1]} | {c[2]} / {c[3]} ({pct(c[2], c[3])}) | "
          f"{c[4]} / {c[5]} ({pct(c[4], c[5])}) |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("module", nargs="?", help="e.g. jax_charrnn/optim.py")
  parser.add_argument("--report", action="store_true", help="only report the last run")
  parser.add_argument("--survivors", action="store_true",
                      help="rerun only the last run's surviving mutants (after adding tests)")
  parser.add_argument("--count", action="store_true", help="only count the mutants")
  parser.add_argument("--list", action="store_true", help="the modules covered")
  parser.add_argument("--summary", action="store_true",
                      help="a table of every module run so far (first run and now)")
  args = parser.parse_args()
  if args.summary:
    summary()
    return
  if args.list or not args.module:
    for m, spec in MODULES.items():
      print(f"{m:32s} {' '.join(spec['tests'])}")
    return
  if args.module not in MODULES:
    sys.exit(f"{args.module} is not one of the modules covered: {', '.join(MODULES)}")
  if args.report:
    report(args.module)
  else:
    run(args.module, count_only=args.count, survivors_only=args.survivors)


if __name__ == "__main__":
  main()
