"""The two compiled programs the host loop drives do every thing `programs.Program` asks, alike."""

import jax
import numpy as np

from jax_charrnn import loop, parallel, programs, walk

from helpers import small_config


def _setup(text_file, **kw):
  cfg = small_config(text_file, steps_per_call=5, **kw)
  corpus = walk.corpus_of(cfg)
  net = loop.build_model(cfg, corpus.vocab.size)
  tx = loop.make_optimizer(cfg, corpus.steps_per_epoch)
  return cfg, corpus, net, tx


def _one_run(text_file):
  cfg, corpus, net, tx = _setup(text_file)
  mesh = parallel.make_mesh(1, cfg.batch_size)
  fresh = loop.init_state(cfg, net, tx)
  shardings = parallel.state_shardings(jax.eval_shape(lambda: fresh), mesh)
  return programs.OneRun(cfg, net, tx, parallel.put(fresh, shardings), corpus, mesh, shardings,
                         step=0)


def _params(program, r):
  return [np.asarray(x) for x in jax.tree.leaves(program.state_of(r).params)]


def test_a_frozen_lone_run_keeps_its_parameters_and_its_step_goes_on(text_file):
  program = _one_run(text_file)
  program.advance(3)
  assert program.learning_rates()[0] > 0
  program.freeze(0)
  before = _params(program, 0)
  losses, _ = program.advance(2)
  assert losses.shape == (1, 2) and int(program.state_of(0).step) == 5
  assert program.learning_rates().tolist() == [0.0]
  for a, b in zip(before, _params(program, 0)):
    np.testing.assert_array_equal(a, b)


def test_a_frozen_run_of_many_stops_and_the_others_go_on(text_file):
  cfg, corpus, net, tx = _setup(text_file)
  states = [loop.init_state(cfg.replace(seed=s), net, tx) for s in (0, 1)]
  program = programs.ManyRuns(cfg, net, tx, loop.stack(states), corpus, step=0)
  program.freeze(1)
  before = [_params(program, r) for r in (0, 1)]
  losses, _ = program.advance(3)
  assert losses.shape == (2, 3)
  assert program.learning_rates()[1] == 0.0 and program.learning_rates()[0] > 0
  after = [_params(program, r) for r in (0, 1)]
  for a, b in zip(before[1], after[1]):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(before[0], after[0]))


def test_keep_best_makes_the_current_parameters_the_best_copy_in_both(text_file):
  one = _one_run(text_file)
  one.advance(4)
  one.keep_best(0, 1.25, np.zeros(1, np.int32))
  state = one.state_of(0)
  assert int(state.best_step) == 4 and float(state.best_loss) == 1.25
  for a, b in zip(jax.tree.leaves(state.best_params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
