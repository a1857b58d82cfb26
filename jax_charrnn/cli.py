"""What every command line shares: flag parsing, errors as paragraphs, devices and processes.

Only entry points (train, sweep, sample, gradcheck, the benchmark) use this
module: it is where flags are parsed, where 64-bit JAX is switched on, where
JAX's distributed runtime is started and where the absl log is sent to a file.

  run(main)           absl's app.run, with every user mistake (a bad flag value,
                      an unreadable flag file, a UserError) as one paragraph and
                      a non-zero exit, never a traceback; --help exits 0
  Runtime             the settings of devices and processes (declared once)
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import os
import re
import sys
import textwrap
import threading
from typing import Callable, Sequence

import jax
from absl import app, flags, logging

from jax_charrnn import config as config_lib
from jax_charrnn import checkpoint, data, errors, loop, memory, parallel, saved
from jax_charrnn.config import setting
from jax_charrnn.console import Console, LogFile

_HELP_FLAGS = {"help", "?", "helpshort", "helpfull", "helpxml"}


class _QuietLibraries(std_logging.Filter):
  """Drops INFO records that third-party libraries log through absl."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def flag_error(e: flags.Error) -> str:
  """absl's message for a bad flag as one clean paragraph, with what to do."""
  text = " ".join(str(e).split())
  text = re.sub(r"^(ERROR:+\s*)+", "", text)                       # absl's own prefix
  text = re.sub(r"Did you mean: (.+?) \?\.?", r"Did you mean --\1?", text)
  text = text.rstrip(".") + ("" if text.endswith("?") else ".")
  if "Unable to open flagfile" in text:
    return (f"{text} Flag files are read relative to the current directory, and so are the "
            "--flagfile lines inside them: run from the repository root (the shipped files "
            "name each other as experiments/NAME.flags), or pass the path from where you are.")
  return f"{text} Check the flag's spelling and value, or run with --help."


def _parse(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    errors.fail(flag_error(e))
  except UnicodeDecodeError as e:
    errors.fail(f"A flag file is not UTF-8 text (byte offset {e.start} cannot be decoded). "
                "Save it as UTF-8.")
  except OSError as e:
    errors.fail(f"Could not read a flag file: {e}.")
  return []


def _default(flag) -> str:
  value = flag.default
  if isinstance(value, (list, tuple)):
    return ",".join(map(str, value))
  if isinstance(value, bool):
    return "true" if value else "false"
  return "" if value is None else str(value)


def help_text(doc: str, module_name: str, flag_values=None) -> str:
  """--help: the command's docstring, then its flags in the order they are declared, under the
  headings of config.SECTIONS, each as `--name=default` and its meaning."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  width, indent = 100, " " * 6
  out = [doc.strip(), "", "Flags, as --name=default (a later flag wins over an earlier one and "
         "over a --flagfile's; --helpfull also lists absl's own):"]
  heading = None
  declared = {f.name: f.metadata.get("help") for f in config_lib.declared()}
  for flag in flag_values.flags_by_module_dict().get(module_name, []):
    new = config_lib.SECTIONS.get(flag.name)
    if flag.name in declared and declared[flag.name] not in flag.help:
      new = None  # a command's own flag of the same name (evaluate's --data_path)
    if new or heading is None:
      heading = new or "This command"
      out += ["", f"{heading}:"]
    out.append(f"  --{flag.name}={_default(flag)}")
    text = flag.help
    values = getattr(flag.parser, "enum_values", None)
    if values:  # absl starts an enum's help with "<a|b|c>: "; say it as the others do
      text = text.split(">: ", 1)[-1] + f" One of: {', '.join(values)}."
    out += textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)
  return "\n".join(out) + "\n"


def _asked_for_help(argv: Sequence[str]) -> bool:
  return any(a.lstrip("-").split("=")[0] in _HELP_FLAGS - {"helpfull", "helpxml"}
             for a in argv[1:] if a.startswith("-"))


def run(main: Callable[[Sequence[str]], None]) -> None:
  """`app.run(main)`, with flag errors and user errors reported as one paragraph."""
  if _asked_for_help(sys.argv):
    module = sys.modules["__main__"]
    sys.stdout.write(help_text(module.__doc__ or "", config_lib.flag_module("__main__")))
    sys.exit(0)

  def guarded(argv):
    # JAX logs at INFO which accelerator plugins it did not find; orbax logs
    # every save step by step: noise for a person, so only their warnings pass.
    std_logging.getLogger("jax").setLevel(std_logging.WARNING)
    handler = logging.get_absl_handler()
    handler.addFilter(_QuietLibraries())
    # The person at the terminal reads the Console's plain lines and our one-paragraph
    # errors; the full log, libraries' errors and tracebacks included, goes to a file in the
    # workdir (`log_to_file`). A log line that cannot be written (a full disk) is dropped.
    handler.setLevel(std_logging.CRITICAL + 1)
    std_logging.raiseExceptions = False
    # Libraries' background threads (orbax's savers, tensorstore's event loops) that fail,
    # e.g. on a full disk, go to the log file; the main thread says what happened, once.
    threading.excepthook = lambda a: logging.error(
        "A background thread failed.", exc_info=(a.exc_type, a.exc_value, a.exc_traceback))
    sys.unraisablehook = lambda u: logging.error(
        "Ignored an exception in %s.", u.object,
        exc_info=(u.exc_type, u.exc_value, u.exc_traceback))
    try:
      main(argv)
    except errors.UserError as e:
      errors.fail(str(e))
    except KeyboardInterrupt:  # Ctrl-C outside the training loop
      errors.fail("Interrupted.", exit_code=130)
    except BrokenPipeError:
      # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      sys.exit(141)
    except MemoryError:
      errors.fail("The run ran out of memory. Use a smaller --hidden_size, --num_layers, "
                  "--batch_size or --seq_length.")
    except Exception as e:  # pylint: disable=broad-except
      text = str(e)
      if ("RESOURCE_EXHAUSTED" in text or "Out of memory" in text) and "No space left" not in text:
        errors.fail(f"The device ran out of memory ({' '.join(str(e).split())[:200]}). Use a "
                    "smaller --hidden_size, --num_layers, --batch_size or --seq_length.")
      raise

  try:
    app.run(guarded, flags_parser=_parse)
  except SystemExit as e:
    asked_for_help = any(a.lstrip("-").split("=")[0] in _HELP_FLAGS
                         for a in sys.argv[1:] if a.startswith("-"))
    if asked_for_help and e.code == 1:  # absl exits 1 after printing the help
      sys.exit(0)
    raise


def no_extra_args(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {' '.join(argv[1:])}. Flags start with --.")


def workdir(path: str) -> str:
  """A --workdir as given, with ~ expanded (the shell leaves it alone inside --flag=~/x)."""
  if not path:
    raise errors.UserError("--workdir is empty: pass the directory the run lives in.")
  return os.path.expanduser(path)


def require_run(path: str | None) -> str:
  """The --workdir of a finished or running training run; a paragraph if it is not one."""
  if not path:
    raise errors.UserError("Pass --workdir=RUN, the directory a training run wrote.")
  path = workdir(path)
  if checkpoint.has_checkpoint(path):
    return path
  runs = sorted(n for n in (os.listdir(path) if os.path.isdir(path) else [])
                if checkpoint.has_checkpoint(os.path.join(path, n)))
  if runs:  # e.g. the root of a sweep
    raise errors.UserError(
        f"{path!r} holds several runs, not one: pass one of them, e.g. "
        f"--workdir={os.path.join(path, runs[0])} (runs: {', '.join(runs)}).")
  raise errors.UserError(f"No checkpoint in {path!r}: train first, e.g. "
                         f"`python -m jax_charrnn.train --workdir={path}`.")


def open_run(path: str | None, which: str = "best") -> saved.Saved:
  """The run at --workdir with its best (or latest) parameters: how every command that reads a
  run (sample, evaluate, export, visualize) loads it.

  64-bit JAX is switched on for a float64 run; a network too large for the
  memory is refused with the estimate; a damaged newest checkpoint is passed
  over with a warning on stderr naming it (saved.load).
  """
  workdir = require_run(path)
  config, meta = saved.read_config(workdir)
  enable_x64_for(config.dtype)
  net = loop.build_model(config, data.Vocab.from_json(meta["vocab"]).size)
  memory.check_run(config, net, loop.make_optimizer(config, int(meta["steps_per_epoch"])))
  return saved.load(workdir, which, warn=Console().warn)


def log_to_file(workdir: str, name: str) -> None:
  """Sends the absl log (INFO and up) to <workdir>/<name>.log (process k > 0:
  <name>.process<k>.log), once the trainer accepts the run (console.LogFile)."""
  suffix = "" if jax.process_index() == 0 else f".process{jax.process_index()}"
  handler = LogFile(os.path.join(os.path.abspath(workdir), f"{name}{suffix}.log"))
  handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  handler.addFilter(_QuietLibraries())
  std_logging.getLogger().addHandler(handler)


def enable_x64_for(dtype: str) -> None:
  """64-bit JAX for the whole process when the run computes in float64."""
  if dtype == "float64":
    jax.config.update("jax_enable_x64", True)


@dataclasses.dataclass(frozen=True)
class Runtime:
  """Devices and processes: how the program is spread, not what it computes."""

  cpu_devices: int = setting(
      0, "On a CPU, present it to JAX as this many devices (each runs on its own thread), so "
      "that data parallelism uses several cores. 0: JAX's default (one).", ge=0, le=4096)
  coordinator_address: str = setting(
      "", "host:port of process 0 of a multi-process run (JAX's distributed runtime). Empty: "
      "a single process.")
  num_processes: int = setting(1, "Processes in a multi-process run.", ge=1, le=65536)
  process_id: int = setting(0, "This process's index, 0 to --num_processes - 1.", ge=0,
                            le=65535)
  distributed_auto: bool = setting(False, "Join a multi-process run on a cluster JAX detects "
                                   "by itself (SLURM, Cloud TPU, ...).")
  distributed_timeout: int = setting(300, "Seconds to wait for all processes of a "
                                     "multi-process run.", ge=1, le=86400)

  def __post_init__(self):
    for f in dataclasses.fields(self):
      message = config_lib.check(f, getattr(self, f.name))
      if message:
        raise errors.UserError(message)
    if self.process_id >= self.num_processes:
      raise errors.UserError(f"--process_id must lie in [0, --num_processes); got process "
                             f"{self.process_id} of {self.num_processes}.")

  @property
  def multi_process(self) -> bool:
    return bool(self.coordinator_address or self.num_processes > 1 or self.distributed_auto)


def _quiet_stdout() -> None:
  """Process k > 0 of a run prints nothing on stdout (process 0 speaks for the run): not even
  what the collectives' C++ libraries print there (Gloo's connection lines). Errors still go to
  stderr, and everything to the process's own log file."""
  sys.stdout.flush()
  os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def start_runtime(rt: Runtime) -> None:
  """Devices and processes, before JAX touches a device."""
  if rt.cpu_devices:
    jax.config.update("jax_num_cpu_devices", rt.cpu_devices)
  if rt.process_id > 0:
    _quiet_stdout()
  if rt.distributed_auto:
    parallel.initialize_auto(rt.distributed_timeout)
    if jax.process_index() > 0:
      _quiet_stdout()
  elif rt.coordinator_address or rt.num_processes > 1:
    if not rt.coordinator_address:
      raise errors.UserError("--num_processes > 1 needs --coordinator_address=HOST:PORT (the "
                             "address of process 0).")
    parallel.initialize(rt.coordinator_address, rt.num_processes, rt.process_id,
                        rt.distributed_timeout)
