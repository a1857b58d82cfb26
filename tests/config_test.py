"""Every setting declared once: the flags, the checks, the run-defining list and the report's
table all come from config.TrainConfig's declarations."""

import dataclasses
import json
import os

import pytest
from absl import flags

from jax_charrnn import cli, config, sample, sweep, train
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import REPO


def _flags(define=train.define_flags):
  fv = flags.FlagValues()
  define(fv)
  return fv


def test_every_setting_is_a_flag_with_its_default_and_help():
  fv = _flags()
  fv(["train"])
  for f in dataclasses.fields(TrainConfig):
    assert fv[f.name].default == f.default, f.name
    assert f.metadata["help"] in fv[f.name].help, f.name
  assert config.from_flags(TrainConfig, fv) == TrainConfig()


@pytest.mark.parametrize("arg,message", [
    ("--hidden_size=0", "hidden_size must be at least 1; got 0."),
    ("--learning_rate=-0.1", "learning_rate must be positive; got -0.1."),
    ("--learning_rate=nan", "learning_rate must be a number; got nan."),
    ("--smoothing=1", "smoothing must be less than 1.0; got 1.0."),
    ("--seed=9223372036854775808", "seed must be at most 9,223,372,036,854,775,807"),
    ("--steps_per_call=2147483648", "steps_per_call must be at most 2,147,483,647"),
    ("--cell=transformer", "cell must be one of rnn, lstm, gru"),
    ("--num_layers=0", "num_layers must be at least 1; got 0."),
    ("--dropout=1", "dropout must be less than 1.0; got 1.0."),
    ("--val_fraction=-0.1", "val_fraction must be at least 0.0; got -0.1."),
    ("--optimizer=sgdx", "value should be one of"),
])
def test_bad_values_are_refused_at_parse_time_with_the_declared_message(arg, message):
  fv = _flags()
  with pytest.raises(flags.IllegalFlagValueError) as e:
    fv(["train", arg])
  assert message in str(e.value)


def test_the_same_checks_guard_the_library():
  with pytest.raises(UserError, match="hidden_size must be at least 1; got 0"):
    TrainConfig(hidden_size=0)
  with pytest.raises(UserError, match="optimizer must be one of adagrad, adam"):
    TrainConfig(optimizer="sgdx")
  with pytest.raises(UserError, match="nothing to train"):
    TrainConfig(epochs=0)
  with pytest.raises(UserError, match="weight_decay applies to the adamw optimizer only"):
    TrainConfig(weight_decay=0.1)
  assert json.loads(TrainConfig().to_json())["learning_rate"] == 0.1


def test_run_defining_settings_and_their_differences():
  defining = config.run_defining()
  assert {"hidden_size", "cell", "num_layers", "learning_rate", "seed", "batch_size",
          "seq_length", "optimizer", "dtype"} <= set(defining)
  assert not {"epochs", "num_steps", "log_every", "data_path", "grad", "num_devices"} & set(defining)
  saved = TrainConfig().to_dict()
  assert config.differences(saved, TrainConfig(hidden_size=50)) == [
      "hidden_size (100 saved, 50 now)"]
  assert config.differences(saved, TrainConfig(epochs=9, log_every=3)) == []
  # A setting the checkpoint predates counts as its default.
  del saved["num_layers"]
  assert config.differences(saved, TrainConfig()) == []


def test_the_report_table_lists_every_setting():
  rows = config.settings_rows(TrainConfig(hidden_size=7))
  assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(TrainConfig)]
  assert ("hidden_size", 7, "H (the course's m): hidden units per layer.") in rows


def test_runtime_settings_are_checked():
  with pytest.raises(UserError, match=r"--process_id must lie in \[0, --num_processes\)"):
    cli.Runtime(num_processes=2, process_id=2)
  assert cli.Runtime(num_processes=2, process_id=1).multi_process


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "experiments"))
                                         if n.endswith(".flags")))
def test_every_experiment_flag_file_parses(name, monkeypatch):
  monkeypatch.chdir(REPO)  # flag files name each other relative to the repository root
  fv = _flags(sweep.define_flags if name.startswith("sweep") else train.define_flags)
  fv(["train", f"--flagfile=experiments/{name}"])
  cfg = config.from_flags(TrainConfig, fv)
  if cfg.cell == "rnn":  # the course's model
    assert cfg.hidden_size == 100 and cfg.seq_length == 25 and cfg.optimizer == "adagrad"
  else:
    assert cfg.optimizer == "adam" and cfg.init_dist == "pytorch"
    # the field's splits: 10% held out on tiny-shakespeare, enwik8's 90/5/5 M bytes by position
    split = (0.05, 0.05) if name == "enwik8.flags" else (0.1, 0.0)
    assert (cfg.val_fraction, cfg.test_fraction) == split
  if name == "enwik8.flags":
    assert cfg.unit == "byte" and cfg.data_path == "enwik8" and cfg.eval_streams == 64
  if name.startswith("goblet") and cfg.cell == "rnn":
    assert cfg.data_path == "goblet_book.txt" and cfg.epochs == 7
    assert cfg.learning_rate == 0.1
  if name.startswith("shakespeare"):
    assert cfg.data_path == "data/tinyshakespeare.txt" and cfg.val_fraction == 0.1
  if name == "shakespeare_gru.flags":
    assert cfg.cell == "gru" and cfg.dropout == 0.2 and cfg.num_steps == 4400
  if name == "goblet_lowercase.flags":
    assert cfg.lowercase and cfg.best_metric == "loss"  # later flags win
  if name == "batch128.flags":
    assert cfg.batch_size == 128 and fv["cpu_devices"].value == 2
  if name == "sweep_lr_seed.flags":
    assert fv["learning_rates"].value == ["0.05", "0.1", "0.2"] and cfg.epochs == 1


def test_entry_points_define_their_flags_without_clashing():
  fv = _flags(sample.define_flags)
  fv(["sample", "--workdir=x", "--top_p=0.5"])
  assert fv["top_p"].value == 0.5
