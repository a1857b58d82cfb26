"""sample --beam=K: beam search against exhaustive search, K = 1 against greedy sampling, and the
command line's output and bad inputs."""

import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_charrnn import cells, data, generate
from jax_charrnn.cells.ops import InitSpec
from jax_charrnn.model import Model

from helpers import REPO, assert_user_error, run_module

VOCAB = data.Vocab.from_text("abc")


def _net(cell, layers, seed=1):
  net = Model(cells.get(cell), vocab_size=3, hidden_size=8, num_layers=layers)
  params = net.init(jax.random.key(seed), InitSpec(dist="pytorch"))
  return net, jax.tree.map(lambda a: a * 4, params)  # sharper distributions: beams disagree


def _every_continuation(net, params, carry, x0, length):
  """(log p of each of the V^length continuations of x0, the continuations), in one call."""
  seqs = np.array(list(itertools.product(range(3), repeat=length)), np.int32)
  inputs = np.concatenate([np.full((len(seqs), 1), x0, np.int32), seqs[:, :-1]], axis=1)

  @jax.jit
  def log_p(inputs, targets):
    logits, _ = net.forward(params, carry, inputs)
    lp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.take_along_axis(lp, targets[:, None], axis=-1))

  return np.asarray(jax.vmap(log_p)(inputs, seqs)), seqs


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1), ("rnn", 1)])
def test_enough_beams_find_the_most_probable_continuation(cell, layers):
  net, params = _net(cell, layers)
  carry, length = net.zero_carry((), jnp.float32), 5
  scores, seqs = _every_continuation(net, params, carry, 0, length)
  best = int(np.argmax(scores))
  text, log_p = generate.beam_search(net, params, VOCAB, carry, 0, length, beams=3 ** 4)
  assert text == VOCAB.decode(seqs[best]) and math.isclose(log_p, scores[best], rel_tol=1e-5)
  # Fewer beams find a continuation at most as probable, and say its log-probability truly.
  for beams in (1, 2, 3):
    text, log_p = generate.beam_search(net, params, VOCAB, carry, 0, length, beams)
    found = int(np.flatnonzero((seqs == VOCAB.encode(text)).all(axis=1))[0])
    assert math.isclose(log_p, scores[found], rel_tol=1e-5, abs_tol=1e-5)
    assert log_p <= scores[best] + 1e-5


def test_one_beam_is_greedy_sampling_and_a_prime_is_read_first():
  net, params = _net("lstm", 2, seed=3)
  carry = net.zero_carry((), jnp.float32)
  for prime in ("", "a", "cab"):
    greedy = generate.generate(net, params, VOCAB, carry, 1, 40, jax.random.key(0),
                               temperature=0.0, prime=prime)[0]
    assert generate.beam_search(net, params, VOCAB, carry, 1, 40, 1, prime)[0] == greedy


def test_a_wrong_beam_step_fails_the_exhaustive_comparison(monkeypatch):
  """The comparison catches a beam search that keeps the least probable continuations."""
  net, params = _net("lstm", 2)
  carry = net.zero_carry((), jnp.float32)
  scores, seqs = _every_continuation(net, params, carry, 0, 4)
  real_top_k = jax.lax.top_k
  monkeypatch.setattr(generate.lax, "top_k", lambda x, k: real_top_k(
      jnp.where(jnp.isfinite(x), -x, x), k))
  generate._beam_steps.clear_cache()  # pylint: disable=protected-access
  text, _ = generate.beam_search(net, params, VOCAB, carry, 0, 4, beams=27)
  monkeypatch.undo()
  generate._beam_steps.clear_cache()  # pylint: disable=protected-access
  assert text != VOCAB.decode(seqs[int(np.argmax(scores))])


@pytest.mark.slow
def test_sample_beam_prints_the_continuation_and_its_log_probability(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
  workdir = str(tmp_path / "run")
  r = run_module("jax_charrnn.train", f"--data_path={book}", f"--workdir={workdir}",
                 "--num_steps=60", "--hidden_size=32", "--seq_length=10", "--sample_every=0",
                 "--report_every=0", "--report_gradcheck_entries=0")
  assert r.returncode == 0, r.stderr[-2000:]
  r = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--beam=4", "--length=30",
                 "--prime=the ")
  assert r.returncode == 0, r.stderr[-2000:]
  text, line = r.stdout.splitlines()
  assert text.startswith("the ") and len(text) == 34
  m = re.fullmatch(r"log-probability of the 30 characters after the prime, 4 beams: "
                   r"(-[\d.]+) nats \(([\d.]+) bits/char\)", line)
  assert m and math.isclose(-float(m[1]) / math.log(2) / 30, float(m[2]), abs_tol=1e-4), line
  greedy = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--temperature=0",
                      "--length=30", "--prime=the ")
  one = run_module("jax_charrnn.sample", f"--workdir={workdir}", "--beam=1", "--length=30",
                   "--prime=the ")
  assert one.stdout.splitlines()[0] == greedy.stdout.rstrip("\n")
  for args, says in ((["--beam=0"], "--beam=0 asks for no beams"),
                     (["--beam=99"], "more beams than the model has characters"),
                     (["--beam=2", "--num_samples=3"], "leave out --words and --num_samples"),
                     (["--beam=2", "--length=1000000"], "--beam draws at most 100,000"),
                     (["--beam=2", "--prime=XYZ"], "holds characters the model does not know")):
    assert_user_error(run_module("jax_charrnn.sample", f"--workdir={workdir}", *args), says)


def test_readmes_beam_output_has_the_commands_format():
  """README shows a real capture; its last line must keep the form the command prints."""
  with open(f"{REPO}/README.md", encoding="utf-8") as f:
    lines = f.read().splitlines()
  start = lines.index("$ python -m jax_charrnn.sample --workdir=runs/shakespeare_5min --beam=8 "
                      "--length=80 --prime=\"ROMEO:\"")
  end = lines.index("```", start)
  assert lines[start + 1].startswith("ROMEO:")
  m = re.fullmatch(r"log-probability of the 80 characters after the prime, 8 beams: "
                   r"(-[\d.]+) nats \(([\d.]+) bits/char\)", lines[end - 1])
  assert m and math.isclose(-float(m[1]) / math.log(2) / 80, float(m[2]), abs_tol=1e-4)
