"""Learning-rate schedules and global-norm clipping: each against its formula; resume continues
the schedule exactly; the learning rate of every logged update reaches metrics.jsonl."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_charrnn import loop, optim, runfiles, start, trainer
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import StopAt, assert_trees_close, strict_x64


def _formula(kind, s, total, warmup=0, r=0.0, d=0.97, every=1, after=0):
  """f(s) written out from optim.py's docstring, in plain Python."""
  if s < warmup:
    return s / warmup
  u, span = s - warmup, max(total - warmup, 1)
  if kind == "constant":
    return 1.0
  if kind == "cosine":
    return r + (1 - r) * (1 + math.cos(math.pi * min(u, span) / span)) / 2
  if kind == "linear":
    return 1 - (1 - r) * min(u, span) / span
  if kind == "step":
    return 1.0 if u < after else max(r, d ** ((u - after) // every))
  raise ValueError(kind)


CASES = [
    dict(kind="constant", warmup=10),
    dict(kind="cosine"), dict(kind="cosine", warmup=7, r=0.1),
    dict(kind="linear"), dict(kind="linear", warmup=5, r=0.25),
    dict(kind="step", d=0.5, every=6, after=9), dict(kind="step", warmup=4, d=0.5, every=3,
                                                     r=0.2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_each_schedule_follows_its_formula(case):
  total = 40
  kind = case.pop("kind")
  f = optim.schedule(kind, total, case.get("warmup", 0), case.get("r", 0.0), case.get("d", 0.97),
                     case.get("every", 1), case.get("after", 0))
  got = np.array([float(f(s)) for s in range(total + 5)])
  want = np.array([_formula(kind, s, total, **case) for s in range(total + 5)])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  if kind != "constant":
    assert got[-1] < got[case.get("warmup", 0)]  # it decays


def test_a_wrong_formula_fails_the_comparison():
  """The check can fail: cosine is not linear."""
  f = optim.schedule("cosine", 40)
  assert not np.allclose([float(f(s)) for s in range(40)],
                         [_formula("linear", s, 40) for s in range(40)], atol=1e-3)


def test_the_chain_scales_each_update_and_reports_the_rate_of_the_latest():
  with strict_x64():
    f = optim.schedule("cosine", 10, warmup=3, min_ratio=0.1)
    tx = optim.make_optimizer("sgd", learning_rate=0.5, clip=5.0, factor=f)
    p = {"w": jnp.ones(3, jnp.float64)}
    state = tx.init(p)
    assert float(optim.learning_rate(state)) == 0.0  # the first update's: warm-up from 0
    g = {"w": jnp.array([1.0, -7.0, 2.0])}
    for s in range(12):
      u, state = tx.update(g, state, p)
      want = -0.5 * float(f(s)) * np.clip(np.asarray(g["w"]), -5, 5)
      np.testing.assert_allclose(np.asarray(u["w"]), want, rtol=1e-12, atol=1e-15)
      assert float(optim.learning_rate(state)) == pytest.approx(0.5 * _formula(
          "cosine", s, 10, warmup=3, r=0.1), rel=1e-6)
      assert float(optim.base_learning_rate(state)) == 0.5
    frozen = optim.with_learning_rate(state, jnp.asarray(0.0))  # a sweep freezing a run
    u, _ = tx.update(g, frozen, p)
    assert not np.any(np.asarray(u["w"]))


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_global_norm_clipping_follows_its_formula(scale):
  with strict_x64():
    g = {"a": scale * jnp.array([3.0, -4.0]), "b": scale * jnp.array([12.0])}
    tx = optim.make_optimizer("sgd", learning_rate=1.0, clip=5.0, clip_mode="global_norm")
    u, _ = tx.update(g, tx.init(g), g)
    norm = scale * 13.0  # sqrt(9 + 16 + 144)
    for k in g:
      np.testing.assert_allclose(-np.asarray(u[k]), np.asarray(g[k]) * min(1.0, 5.0 / norm),
                                 rtol=1e-14)
    elementwise = optim.make_optimizer("sgd", learning_rate=1.0, clip=5.0)
    v, _ = elementwise.update(g, elementwise.init(g), g)
    # The two modes agree only where nothing is clipped.
    assert np.allclose(np.asarray(v["b"]), np.asarray(u["b"])) == (scale == 0.1)


def test_the_default_adds_nothing_to_the_course_chain():
  """constant without warm-up: no factor, the same optimiser state as before schedules."""
  assert loop.lr_factor(TrainConfig(), 100) is None
  state = loop.make_optimizer(TrainConfig(), 100).init({"w": jnp.zeros(2)})
  assert len(state.inner_state) == 2
  assert not any(isinstance(s, optim.ScheduleState) for s in state.inner_state)
  assert loop.lr_factor(TrainConfig(warmup_steps=3), 100) is not None


@pytest.mark.parametrize("kwargs,message", [
    (dict(min_lr_ratio=0.1), "min_lr_ratio is the floor of a decaying learning rate"),
    (dict(lr_schedule="cosine", lr_decay=0.5), "lr_decay belongs to lr_schedule=step"),
    (dict(lr_decay_every=3, lr_decay_after=2), "lr_decay_every, lr_decay_after belong to "),
    (dict(lr_schedule="linear", min_lr_ratio=1.5), "min_lr_ratio must be at most 1.0"),
    (dict(lr_schedule="step", lr_decay=0.0), "lr_decay must be positive"),
    (dict(warmup_steps=-1), "warmup_steps must be at least 0"),
    (dict(lr_schedule="exp"), "lr_schedule must be one of constant, cosine, linear, step"),
    (dict(clip_mode="norm"), "clip_mode must be one of elementwise, global_norm"),
])
def test_bad_schedule_settings_are_refused(kwargs, message):
  with pytest.raises(UserError, match=message):
    TrainConfig(**kwargs)


def test_the_same_settings_pass_where_they_belong():
  TrainConfig(lr_schedule="cosine", min_lr_ratio=0.1, warmup_steps=5)
  TrainConfig(lr_schedule="step", lr_decay=0.5, lr_decay_every=3, lr_decay_after=2,
              min_lr_ratio=0.1)
  TrainConfig(clip_mode="global_norm", clip=1.0)


def test_a_warm_up_as_long_as_the_run_is_refused_and_a_shorter_one_passes():
  config = TrainConfig(lr_schedule="cosine", warmup_steps=10, num_steps=10)
  with pytest.raises(UserError, match="warmup_steps=10 is not shorter than the run's 10"):
    config.total_steps(7)
  assert config.replace(num_steps=11).total_steps(7) == 11
  by_epochs = TrainConfig(warmup_steps=20, epochs=2)  # the total known only from the text
  assert by_epochs.total_steps(11) == 22
  with pytest.raises(UserError, match="would never reach"):
    by_epochs.total_steps(10)


def _config(text_file, **overrides):
  base = dict(data_path=text_file, hidden_size=16, seq_length=10, batch_size=2, num_steps=120,
              steps_per_call=32, log_every=10, sample_every=0, report_every=0,
              checkpoint_every=0, sample_length=20, passage_length=40,
              report_gradcheck_entries=0, optimizer="adam", learning_rate=0.01,
              lr_schedule="cosine", warmup_steps=15, min_lr_ratio=0.1, clip_mode="global_norm",
              clip=1.0)
  base.update(overrides)
  return TrainConfig(**base)


def test_a_scheduled_run_logs_its_rates_and_resumes_exactly(text_file, tmp_path):
  """Stopped (Ctrl-C) after 60 updates and resumed == 120 in one go (the schedule spans the
  same 120; across an epoch boundary: 70 chunks)."""
  straight = trainer.train(_config(text_file), str(tmp_path / "a"))
  half = str(tmp_path / "b")
  stopped = trainer.train(_config(text_file), half, console=StopAt("step 60/"))
  assert stopped.record.interrupted and 60 <= stopped.record.step < 120
  resumed = trainer.train(_config(text_file), half)
  assert resumed.record.step == 120
  assert_trees_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)
  rows = runfiles.read_metrics(str(tmp_path / "a"))
  f = optim.schedule("cosine", 120, 15, 0.1)
  for row in rows:  # the rate of the latest update (number step - 1)
    assert row["learning_rate"] == pytest.approx(0.01 * float(f(row["step"] - 1)), rel=1e-5)
  assert [r["learning_rate"] for r in runfiles.read_metrics(half)] == pytest.approx(
      [r["learning_rate"] for r in rows], rel=1e-6)
  md = open(f"{half}/{runfiles.REPORT}", encoding="utf-8").read()
  assert "learning rate 0.01 (cosine schedule, floor 0.1 of it) after 15 updates" in md
  assert "clipped to a global norm of 1.0" in md


def test_a_scheduled_sweep_freezes_a_diverged_run_and_keeps_the_others_rates(text_file, tmp_path):
  """Freezing sets the base rate of that run only to 0: the others keep their own base rate
  and schedule (a freeze that wrote the scheduled rates back as base rates would shrink them)."""
  cfg = _config(text_file, num_steps=60, optimizer="adagrad", clip_mode="elementwise", clip=5.0,
                learning_rate=0.1, warmup_steps=0, lr_schedule="linear")
  results = trainer.sweep(cfg, [0.1, 1e38], [0], str(tmp_path / "sw"))
  assert {r.record.name: r.record.diverged_at is not None for r in results} == {
      "lr0.1_seed0": False, "lr1e+38_seed0": True}
  assert runfiles.read_metrics(str(tmp_path / "sw" / "lr1e+38_seed0"))[-1]["learning_rate"] == 0.0
  f = optim.schedule("linear", 60, min_ratio=0.1)
  for row in runfiles.read_metrics(str(tmp_path / "sw" / "lr0.1_seed0")):
    assert row["learning_rate"] == pytest.approx(0.1 * float(f(row["step"] - 1)), rel=1e-5)


class _Recording(StopAt):
  """A quiet console that keeps its warnings."""

  def __init__(self):
    super().__init__(prefix="\0never")
    self.warnings = []

  def warn(self, text):
    super().warn(text)
    self.warnings.append(text)


def test_resuming_a_decay_with_another_length_warns_with_both_rates(text_file, tmp_path):
  """The decay is spread over the run's length: resumed with another --num_steps, the rate
  jumps, and the person is told by how much and how to continue exactly; resumed with the
  same length, nothing is said."""
  work = str(tmp_path / "run")
  stopped = trainer.train(_config(text_file), work, console=StopAt("step 60/"))
  step = stopped.record.step
  assert stopped.record.interrupted and 60 <= step < 120
  longer = _Recording()
  resumed = trainer.train(_config(text_file, num_steps=200), work, console=longer)
  assert resumed.record.step == 200
  warning, = [w for w in longer.warnings if "updates long" in w]
  new = 0.01 * float(optim.schedule("cosine", 200, 15, 0.1)(step))
  old = 0.01 * float(optim.schedule("cosine", 120, 15, 0.1)(step))
  assert f"The checkpoint's run is 120 updates long; this one is 200." in warning
  assert f"update {step + 1:,} uses {new:.4g} where the saved run would have used {old:.4g}" in (
      warning)
  assert "--num_steps=120" in warning
  # The next rate logged is the new schedule's, as the warning says.
  rows = [r for r in runfiles.read_metrics(work) if r["step"] > step]
  f = optim.schedule("cosine", 200, 15, 0.1)
  assert rows and rows[0]["learning_rate"] == pytest.approx(0.01 * float(f(rows[0]["step"] - 1)),
                                                            rel=1e-5)
  again = _Recording()
  work2 = str(tmp_path / "same")
  trainer.train(_config(text_file), work2, console=StopAt("step 60/"))
  trainer.train(_config(text_file), work2, console=again)
  assert not [w for w in again.warnings if "updates long" in w]


@pytest.mark.parametrize("kind,saved,now,warned", [
    ("cosine", 120, 200, True), ("linear", 120, 90, True), ("cosine", 120, 120, False),
    ("constant", 120, 200, False), ("step", 120, 200, False)])
def test_schedule_change_warns_only_for_a_decay_whose_length_changed(kind, saved, now, warned):
  cfg = TrainConfig(num_steps=now, lr_schedule=kind, warmup_steps=10,
                    min_lr_ratio=0.0 if kind == "constant" else 0.1)
  meta = {"step": 50, "config": {"num_steps": saved, "epochs": 0}}
  note = start.schedule_change(meta, cfg, steps_per_epoch=7, total=now)
  assert (note is not None) == warned, note
  # A run saved by epochs is epochs x updates per epoch long (3 x 7 = 21 here).
  by_epochs = {"step": 15, "config": {"num_steps": 0, "epochs": 3}}
  assert start.schedule_change(by_epochs, cfg, steps_per_epoch=7, total=21) is None
  longer = start.schedule_change(by_epochs, cfg, steps_per_epoch=7, total=30)
  assert (longer is not None) == (kind in ("cosine", "linear")), longer
  if longer:  # num_steps wins over epochs: the saved length, whichever way it was set
    assert "--num_steps=21." in longer
  # A run already as long as asked for (or longer) makes no update: nothing to warn of.
  done = {"step": now, "config": {"num_steps": saved, "epochs": 0}}
  assert start.schedule_change(done, cfg, steps_per_epoch=7, total=now) is None


def test_resuming_a_sweep_with_another_length_warns_once_and_each_run_follows_the_new_decay(
    text_file, tmp_path):
  """A sweep extended (or shortened) spreads every run's decay over the new length: one warning,
  with the first run's rates; every run's next logged rate is its own base rate times the new
  schedule. Run again with the length it now has, nothing is said."""
  work = str(tmp_path / "sw")
  trainer.sweep(_config(text_file, num_steps=30), [0.01, 0.02], [0], work)
  longer = _Recording()
  trainer.sweep(_config(text_file, num_steps=50), [0.01, 0.02], [0], work, console=longer)
  warning, = [w for w in longer.warnings if "updates long" in w]
  new = 0.01 * float(optim.schedule("cosine", 50, 15, 0.1)(30))
  old = 0.01 * float(optim.schedule("cosine", 30, 15, 0.1)(30))
  assert "The checkpoint's run is 30 updates long; this one is 50." in warning
  assert f"update 31 uses {new:.4g} where the saved run would have used {old:.4g}" in warning
  assert "--num_steps=30" in warning and "The rates are lr0.01_seed0's" in warning
  f = optim.schedule("cosine", 50, 15, 0.1)
  for lr in (0.01, 0.02):
    rows = [r for r in runfiles.read_metrics(f"{work}/lr{lr:g}_seed0") if r["step"] > 30]
    assert rows and all(r["learning_rate"] == pytest.approx(lr * float(f(r["step"] - 1)),
                                                            rel=1e-5) for r in rows)
  again = _Recording()
  trainer.sweep(_config(text_file, num_steps=50), [0.01, 0.02], [0], work, console=again)
  assert not [w for w in again.warnings if "updates long" in w]
