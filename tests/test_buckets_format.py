"""The stored form of score histograms: sparse, and exactly the histogram it was."""

from hypothesis import given
from hypothesis import strategies as st

from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.store.buckets import decode_scores, encode_scores

scored = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 1)), max_size=50)


@given(scored, st.sampled_from([1, 10, 100]))
def test_a_histogram_survives_its_stored_form(pairs: list[tuple[float, int]], bins: int) -> None:
    histogram = ScoreHistogram.of(pairs, bins)
    assert decode_scores(encode_scores(histogram)) == histogram


def test_the_stored_form_grows_with_the_bins_used_not_with_all_bins() -> None:
    few = encode_scores(ScoreHistogram.of([(0.25, 1), (0.75, 0)]))
    full = encode_scores(ScoreHistogram.of([(i / 100 + 0.001, i % 2) for i in range(100)]))
    assert len(few) * 10 < len(full)
