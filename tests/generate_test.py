"""Words of interest: whole words, any case by default, shown in context."""

from jax_charrnn import generate


def test_words_count_whole_words_in_any_case():
  passages = ["Harry and Ron ran.", "harry! wrong RONALD", "no one here", "HARRY harry"]
  counts = generate.count_words(passages, ["harry", "ron"])
  assert (counts["harry"].passages, counts["harry"].occurrences) == (3, 4)
  assert (counts["ron"].passages, counts["ron"].occurrences) == (1, 1)  # not wrong, not Ronald
  assert counts["ron"].examples == ("…Harry and Ron ran.…",)
  exact = generate.count_words(passages, ["harry"], case_sensitive=True)["harry"]
  assert (exact.passages, exact.occurrences) == (2, 2)
