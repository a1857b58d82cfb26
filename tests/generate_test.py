"""Drawing passages (primes, pieces, loading a run) and words of interest."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, data, generate, model, saved, trainer
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.config import TrainConfig
from jax_charrnn.errors import UserError

from helpers import TINY_TEXT, load_run, small_config

VOCAB = data.Vocab.from_text(TINY_TEXT)


def test_words_count_whole_words_in_any_case():
  passages = ["Harry and Ron ran.", "harry! wrong RONALD", "no one here", "HARRY harry"]
  counts = generate.count_words(passages, ["harry", "ron"])
  assert (counts["harry"].passages, counts["harry"].occurrences) == (3, 4)
  assert (counts["ron"].passages, counts["ron"].occurrences) == (1, 1)  # not wrong, not Ronald
  assert counts["ron"].examples == ("…Harry and Ron ran.…",)
  exact = generate.count_words(passages, ["harry"], case_sensitive=True)["harry"]
  assert (exact.passages, exact.occurrences) == (2, 2)


def _net(layers=2):
  # Weights large enough that the state matters to what is drawn next.
  net = model.Model(cells.get("rnn"), vocab_size=VOCAB.size, hidden_size=8, num_layers=layers)
  return net, net.init(jax.random.key(0), InitSpec(sigma=1.5))


def test_a_passage_is_the_model_sampled_from_the_given_state():
  net, p = _net()
  carry = jax.tree.map(lambda c: c + 0.1, net.zero_carry())
  got = generate.generate(net, p, VOCAB, carry, 3, 40, jax.random.key(5), temperature=0.7,
                          top_p=0.9, num_samples=2)
  assert len(got) == 2 and all(len(s) == 40 for s in got) and got[0] != got[1]
  both = jax.tree.map(lambda c: jnp.broadcast_to(c, (2,) + c.shape), carry)
  ids = model.sample(net, p, both, jnp.array([3, 3]), 40, jax.random.key(5), 0.7, 0.9)
  assert got == [VOCAB.decode(np.asarray(ids)[:, i]) for i in range(2)]


def test_a_prime_is_read_first_and_the_passage_goes_on_from_it():
  net, p = _net()
  prime = "the qu"
  got = generate.generate(net, p, VOCAB, net.zero_carry(), 0, 30, jax.random.key(1),
                          prime=prime)[0]
  assert got.startswith(prime) and len(got) == len(prime) + 30
  ids = VOCAB.encode(prime)

  def from_prefix(n):  # the passage drawn after reading the prime's first n characters
    carry = net.hidden_states(p, net.zero_carry(), jnp.asarray(ids[:n]))[1]
    rest = model.sample(net, p, jax.tree.map(lambda c: c[None], carry), jnp.array([ids[-1]]),
                        30, jax.random.key(1))
    return VOCAB.decode(np.asarray(rest)[:, 0])

  assert got[len(prime):] == from_prefix(len(prime) - 1)  # all but the last, which is x0
  assert from_prefix(1) != from_prefix(len(prime) - 1)  # (the test can tell them apart)
  one = generate.generate(net, p, VOCAB, net.zero_carry(), 0, 5, jax.random.key(1), prime="t")
  first = model.sample(net, p, net.zero_carry((1,)), jnp.array(VOCAB.encode("t")), 5,
                       jax.random.key(1))
  assert one[0] == "t" + VOCAB.decode(np.asarray(first)[:, 0])  # a one-character prime


def test_a_prime_with_unknown_characters_is_refused_naming_them():
  net, p = _net()
  with pytest.raises(UserError, match="'Z'"):
    generate.generate(net, p, VOCAB, net.zero_carry(), 0, 5, jax.random.key(0), prime="aZ")


def test_long_passages_come_in_pieces_that_go_on_from_each_other(monkeypatch):
  net, p = _net()
  monkeypatch.setattr(generate, "PIECE", 7)
  pieces = list(generate.generate_pieces(net, p, VOCAB, net.zero_carry(), 2, 20,
                                         jax.random.key(3), prime="ab"))
  assert [len(x[0]) for x in pieces] == [2 + 7, 7, 6]  # the prime, then 7, 7 and 6 characters
  # Each piece: its own key (the key folded with the characters drawn so far), going on
  # from the state and the last character of the piece before.
  carry, x, text = None, None, ""
  ids = VOCAB.encode("ab")
  carry = jax.tree.map(lambda c: c[None], net.hidden_states(p, net.zero_carry(),
                                                            jnp.asarray(ids[:-1]))[1])
  x = jnp.array([ids[-1]])
  for done, n in [(0, 7), (7, 7), (14, 6)]:
    got, carry, x = model.sample_on(net, p, carry, x, n, jax.random.fold_in(jax.random.key(3),
                                                                           done), 1.0, 1.0)
    text += VOCAB.decode(np.asarray(got)[:, 0])
  assert "".join(x[0] for x in pieces) == "ab" + text
  short = list(generate.generate_pieces(net, p, VOCAB, net.zero_carry(), 2, 7,
                                        jax.random.key(3)))
  assert len(short) == 1  # up to PIECE characters: one call, with the key itself
  carry0 = jax.tree.map(lambda c: c[None], net.zero_carry())
  alone = model.sample(net, p, carry0, jnp.array([2]), 7, jax.random.key(3))
  assert short[0][0] == VOCAB.decode(np.asarray(alone)[:, 0])


def test_word_examples_show_the_context_asked_for():
  counts = generate.count_words(["a cat sat. the cat ran; cat"], ["cat"], examples=2, context=3)
  assert counts["cat"].occurrences == 3 and counts["cat"].examples == ("…a cat sa…",
                                                                        "…he cat ra…")


def test_a_saved_run_names_the_parameters_it_holds(two_stream_run):
  best, latest = saved.load(two_stream_run, "best"), saved.load(two_stream_run, "latest")
  assert best.which == "best" and best.describe() == (
      f"the best parameters (after {best.updates:,} updates)")
  assert best.updates == best.meta["best_step"] >= 0
  assert latest.describe() == f"the latest parameters (after {latest.step:,} updates)"
  assert latest.updates == latest.step == latest.meta["step"]


@pytest.fixture(scope="module")
def two_stream_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("gen")
  book = root / "book.txt"
  book.write_text(TINY_TEXT * 8, encoding="utf-8")
  cfg = small_config(str(book), hidden_size=8, batch_size=2, checkpoint_every=0,
                     passage_length=10, init_sigma=0.1)
  trainer.train(cfg, str(root / "run"))
  return str(root / "run")


def test_load_gives_stream_zero_of_the_best_or_the_latest_state(two_stream_run):
  from jax_charrnn import checkpoint, loop  # pylint: disable=g-import-not-at-top
  net, best, vocab, carry, x0, meta = load_run(two_stream_run, "best")
  _, latest, _, carry_l, x0_l, _ = load_run(two_stream_run, "latest")
  assert vocab.chars == VOCAB.chars and net.hidden_size == 8
  cfg = TrainConfig.from_dict(meta["config"])
  tx = loop.make_optimizer(cfg, meta["steps_per_epoch"])
  target = jax.eval_shape(lambda: loop.init_state(cfg, net, tx))
  state, _ = checkpoint.restore(two_stream_run, target)
  assert 0 <= int(state.best_step) < 60  # the best copy is an earlier update's
  for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(state.best_params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(latest), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(carry[0], state.best_carry[0][0])  # stream 0, not stream 1
  np.testing.assert_array_equal(carry_l[0], state.carry[0][0])
  assert x0 == int(state.best_x[0]) and x0_l == meta["next_char"]


def test_load_uses_the_best_copy_from_update_zero_on_and_the_latest_without_one(two_stream_run,
                                                                              monkeypatch):
  from jax_charrnn import checkpoint  # pylint: disable=g-import-not-at-top
  restore = checkpoint.restore

  def with_best_step(best_step):
    def fake(workdir, target, **kw):
      state, meta = restore(workdir, target, **kw)
      return state._replace(best_step=jnp.asarray(best_step, jnp.int32)), meta
    return fake

  monkeypatch.setattr(checkpoint, "restore", with_best_step(0))
  _, best0, _, _, _, _ = load_run(two_stream_run, "best")
  _, latest, _, _, _, _ = load_run(two_stream_run, "latest")
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(best0),
                                                       jax.tree.leaves(latest)))
  monkeypatch.setattr(checkpoint, "restore", with_best_step(-1))  # no best copy yet
  _, none, _, _, _, _ = load_run(two_stream_run, "best")
  for a, b in zip(jax.tree.leaves(none), jax.tree.leaves(latest)):
    np.testing.assert_array_equal(a, b)

  def without_next_char(workdir, target, **kw):  # a checkpoint that does not say where text goes on
    state, meta = restore(workdir, target, **kw)
    return state, {k: v for k, v in meta.items() if k != "next_char"}

  monkeypatch.setattr(checkpoint, "restore", without_next_char)
  assert load_run(two_stream_run, "latest")[4] == 0  # then from the first character


def test_the_defaults_one_passage_three_examples_and_latest_without_a_best():
  net, p = _net()
  assert len(generate.generate(net, p, VOCAB, net.zero_carry(), 0, 5, jax.random.key(0))) == 1
  assert [len(x) for x in generate.generate_pieces(net, p, VOCAB, net.zero_carry(), 0, 5,
                                                   jax.random.key(0))] == [1]
  counts = generate.count_words(["cat " * 5], ["cat"])
  assert counts["cat"].occurrences == 5 and len(counts["cat"].examples) == 3
  shown = generate.count_words(["x" * 30 + " cat " + "y" * 30], ["cat"])["cat"].examples
  assert shown == ("…" + "x" * 19 + " cat " + "y" * 19 + "…",)  # 20 characters each side
  with pytest.raises(AttributeError):  # a result, not a scratch pad (frozen)
    counts["cat"].passages = 0


@pytest.mark.parametrize("missing", ["vocab", "config"])
def test_load_refuses_a_checkpoint_that_train_did_not_write(two_stream_run, monkeypatch, missing):
  from jax_charrnn import checkpoint  # pylint: disable=g-import-not-at-top
  read_meta = checkpoint.read_meta

  def without(workdir):
    step, meta = read_meta(workdir)
    return step, {k: v for k, v in meta.items() if k != missing}

  monkeypatch.setattr(checkpoint, "read_meta", without)
  with pytest.raises(UserError, match="not written by jax_charrnn.train"):
    load_run(two_stream_run, "best")
