"""The course notebook's parameters cell (experiments/assignment4.ipynb), checked once.

The cell tagged "parameters" holds plain Python values, and papermill (or a
person) may replace them: papermill passes a value given on its command line
with `-r` as text ('300', 'no'). `check` reads each value as the notebook means
it, text included where the meaning is clear ('300' is 300, 'no' is False,
'None' is None, 'harry, ron' is two words), and refuses anything else in one
sentence that names the parameter, what it takes and what it got, before any
work: a bad value would otherwise fail minutes later, far from its cause, or
(LOWERCASE='no', a true string) be taken silently.

  values = notebook.check({name: globals()[name] for name in notebook.PARAMETERS})
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from jax_charrnn.cells.ops import INIT_DISTS
from jax_charrnn.errors import UserError

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class Parameter:
  """What one parameter takes: a kind ("text", "bool", "int", "choice", "words"), the least
  whole number allowed (kind "int"), the choices (kind "choice"), whether None is allowed."""

  kind: str
  least: int = 0
  choices: tuple = ()
  optional: bool = False


PARAMETERS = {
    "DATA_PATH": Parameter("text"),
    "LOWERCASE": Parameter("bool"),
    "INIT_DIST": Parameter("choice", choices=INIT_DISTS),
    "BEST_METRIC": Parameter("choice", choices=("smooth_loss", "loss")),
    "EPOCHS": Parameter("int", least=1),
    "NUM_STEPS": Parameter("int", least=1, optional=True),
    "SEED": Parameter("int"),
    "PLOT_EVERY": Parameter("int", least=1),
    "REPORT_EVERY": Parameter("int", least=1),
    "SAMPLE_LENGTH": Parameter("int", least=1),
    "PASSAGE_LENGTH": Parameter("int", least=1),
    "GRADCHECK_HIDDEN": Parameter("int", least=1),
    "GRADCHECK_ENTRIES": Parameter("int", least=1, optional=True),
    "WORDS": Parameter("words", optional=True),
    "NUM_PASSAGES": Parameter("int", least=1),
    "WORDS_LENGTH": Parameter("int", least=1),
}


def check(values: dict[str, Any]) -> dict[str, Any]:
  """The parameters as the notebook uses them (see the module docstring).

  Raises:
    UserError: a missing parameter, or a value that is not what the parameter takes.
  """
  missing = [name for name in PARAMETERS if name not in values]
  if missing:
    raise UserError(f"The parameters cell lacks {', '.join(missing)}: run the notebook from "
                    "its first cell.")
  return {name: _read(name, values[name], PARAMETERS[name]) for name in PARAMETERS}


def _read(name: str, value: Any, p: Parameter) -> Any:
  """One value read as parameter `p` means it."""
  text = value.strip() if isinstance(value, str) else None
  if p.optional and (value is None or text in ("None", "none", "")):
    return None
  if p.kind == "text" and text is not None:
    return value
  if p.kind == "bool":
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
      return bool(value)
    if text is not None and text.lower() in _TRUE + _FALSE:
      return text.lower() in _TRUE
  if p.kind == "choice" and text in p.choices:
    return text
  if p.kind == "int":
    number = _whole(value)
    if number is not None and number >= p.least:
      return number
  if p.kind == "words":
    words = re.split(r"[,\s]+", text) if text is not None else value
    if isinstance(words, (list, tuple)) and all(isinstance(w, str) for w in words):
      words = [w.strip() for w in words if w.strip()]
      if words:
        return words
  raise UserError(f"{name} = {value!r} in the parameters cell: {name} takes "
                  f"{_takes(p)}. Change it there (or in papermill's -p/-r) and run again.")


def _whole(value: Any) -> int | None:
  """A whole number from an int, an integral float or text such as '300' or '10_000'."""
  if isinstance(value, bool):
    return None
  if isinstance(value, int):
    return value
  if isinstance(value, float) and value.is_integer():
    return int(value)
  if isinstance(value, str) and re.fullmatch(r"\s*\d[\d_,]*\s*", value):
    return int(re.sub(r"[_,\s]", "", value))
  return None


def _takes(p: Parameter) -> str:
  what = {"text": "a text (a file name)", "bool": "True or False",
          "int": f"a whole number of at least {p.least:,}",
          "choice": "one of " + ", ".join(map(repr, p.choices)),
          "words": "a list of words, e.g. ['harry', 'ron'] (or one text: 'harry, ron')"}[p.kind]
  return what + (", or None" if p.optional else "")
