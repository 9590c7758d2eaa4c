"""The time buckets in the database: written inside the store's transactions, read for windows.

Format: ``buckets(model, version, resolution, start, a_tp, a_tn, a_fp, a_fn, p_tp, p_tn, p_fp,
p_fn, a_scores, p_scores, shard)``, rows per series and bucket (``windows.py``): the confusion
counts of the outcomes whose label arrived in it (``a_``) and of those predicted in it (``p_``),
and the score histograms of each view (``scores.py``: ``to_row`` as sparse MessagePack, see
``encode_scores``; NULL before any score). A bucket is the sum of its rows: each writer adds to
the row of its own ``shard`` (``sql.py``), so writers sharing a database do not queue for one.
"""

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import Series
from feedback_monitor.store import Point, Window
from feedback_monitor.windows import RESOLUTIONS, Span, TimeView, floor

if TYPE_CHECKING:
    from feedback_monitor.store.sql import Database

Moment = tuple[int, int]
"""The minutes (their starts) of an outcome's arrival and of its prediction."""

_ADD = """
    INSERT INTO buckets (model, version, resolution, start, shard,
                         a_tp, a_tn, a_fp, a_fn, p_tp, p_tn, p_fp, p_fn)
    VALUES {}
    ON CONFLICT (model, version, resolution, start, shard) DO UPDATE SET
        a_tp = buckets.a_tp + excluded.a_tp, a_tn = buckets.a_tn + excluded.a_tn,
        a_fp = buckets.a_fp + excluded.a_fp, a_fn = buckets.a_fn + excluded.a_fn,
        p_tp = buckets.p_tp + excluded.p_tp, p_tn = buckets.p_tn + excluded.p_tn,
        p_fp = buckets.p_fp + excluded.p_fp, p_fn = buckets.p_fn + excluded.p_fn
"""
_KEY = "model = ? AND version = ? AND resolution = ? AND start = ? AND shard = ?"
_RANGE = "model = ? AND version = ? AND resolution = ? AND start >= ? AND start < ?"
_PREFIX = {TimeView.ARRIVAL: "a_", TimeView.PREDICTION: "p_"}
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[float]).decode


def add(
    db: "Database",
    series: Series,
    shard: int,
    timed: Mapping[Moment, Counts],
    scored: Mapping[Moment, Sequence[tuple[float, int]]],
) -> "Scores | None":
    """Add outcomes to the buckets that hold them, at every resolution and in both views; with
    scores, what merging them takes (``Scores.merge``, once the reads are answered)."""
    rows: dict[tuple[int, int], list[int]] = {}
    for moment, counts in timed.items():
        for arrival, prediction in _slots(moment):
            _add_to(rows, arrival, 0, counts)
            _add_to(rows, prediction, 4, counts)
    slots = list(rows.items())
    for start in range(0, len(slots), _ADD_ROWS):  # few statements: one costs more than a row
        chunk = slots[start : start + _ADD_ROWS]
        values = [v for slot, row in chunk for v in (*series, *slot, shard, *row)]
        db.execute(_add(len(chunk)), values)
    return Scores(db, (*series, shard), scored) if scored else None


class Scores:
    """Scored outcomes to merge into the histograms of a shard's buckets (rows that exist by
    now): what those hold is read at once, the answers awaited only by ``merge``.

    The buckets are read per resolution, ``_READ_STARTS`` to a statement (each an index lookup):
    a backfill's outcomes spread over a year fill thousands, and SQLite slowed to 0.2 ms a read
    with one statement (and cursor) open for each."""

    def __init__(
        self,
        db: "Database",
        row: tuple[str, str, int],  # model, version, shard
        scored: Mapping[Moment, Sequence[tuple[float, int]]],
    ) -> None:
        self._row = row
        self._scored = scored
        self._views = _views(scored)
        self._histograms: dict[tuple[Moment, ...], ScoreHistogram] = {}
        starts: dict[int, list[int]] = {}
        for resolution, start in self._views:
            starts.setdefault(resolution, []).append(start)
        self._reads = [
            db.execute(_read_scores(len(chunk)), (*row, resolution, *chunk))
            for resolution, every in starts.items()
            for chunk in (every[i : i + _READ_STARTS] for i in range(0, len(every), _READ_STARTS))
        ]

    def merge(self, db: "Database") -> None:
        stored = {
            (int(resolution), int(start)): blobs
            for read in self._reads
            for resolution, start, *blobs in read.fetchall()
        }
        model, version, shard = self._row
        updates = [
            (*map(self._merged, stored[slot], views), model, version, *slot, shard)
            for slot, views in self._views.items()
        ]
        db.executemany(f"UPDATE buckets SET a_scores = ?, p_scores = ? WHERE {_KEY}", updates)

    def _merged(self, blob: bytes | None, moments: tuple[Moment, ...]) -> bytes | None:
        if not moments:
            return blob
        # The buckets that hold the same moments share their histogram: those of a batch that
        # arrived in one minute hold all its outcomes in the arrival view, at every resolution.
        histogram = self._histograms.get(moments)
        if histogram is None:
            pairs = itertools.chain.from_iterable(self._scored[moment] for moment in moments)
            histogram = self._histograms[moments] = ScoreHistogram.of(pairs)
        if blob is not None:
            histogram = histogram + decode_scores(blob)
        return encode_scores(histogram)


_READ_STARTS = 500
_ADD_ROWS = 1000  # 13,000 parameters: PostgreSQL takes 65,535 a statement, SQLite 32,766


@functools.cache
def _read_scores(starts: int) -> str:
    """The read of the score histograms of a shard's buckets of one resolution at ``starts``
    starts."""
    return (
        "SELECT resolution, start, a_scores, p_scores FROM buckets WHERE model = ? AND version = ?"
        f" AND shard = ? AND resolution = ? AND start IN ({', '.join(['?'] * starts)})"
    )


def _views(
    scored: Mapping[Moment, Sequence[tuple[float, int]]],
) -> dict[tuple[int, int], tuple[tuple[Moment, ...], tuple[Moment, ...]]]:
    """The moments of the scored outcomes of each bucket (resolution, start), in the arrival
    view and in the prediction view."""
    views: dict[tuple[int, int], tuple[list[Moment], list[Moment]]] = {}
    for moment in scored:
        for arrival, prediction in _slots(moment):
            views.setdefault(arrival, ([], []))[0].append(moment)
            views.setdefault(prediction, ([], []))[1].append(moment)
    return {slot: (tuple(a), tuple(p)) for slot, (a, p) in views.items()}


def _slots(moment: Moment) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """At every resolution, the buckets (resolution, start) of a moment's arrival and of its
    prediction."""
    arrived, predicted = moment
    return [((r, floor(arrived, r)), (r, floor(predicted, r))) for r in RESOLUTIONS]


def _add_to(
    rows: dict[tuple[int, int], list[int]], slot: tuple[int, int], view: int, counts: Counts
) -> None:
    """Add ``counts`` to the arrival (``view`` 0) or prediction (4) half of a bucket's row."""
    row = rows.get(slot)
    if row is None:
        row = rows[slot] = [0] * 8
    row[view] += counts.tp
    row[view + 1] += counts.tn
    row[view + 2] += counts.fp
    row[view + 3] += counts.fn


@functools.cache
def _add(rows: int) -> str:
    """The UPSERT of ``rows`` rows (each added to at most once: their keys differ)."""
    return _ADD.format(", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


def encode_scores(histogram: ScoreHistogram) -> bytes:
    """Sparse: the row's length, then (index, value) of its non-zero numbers, since a bucket
    holds scores in a few of its bins (dense, a minute bucket would take kilobytes)."""
    row = histogram.to_row()
    return _encode([len(row), *itertools.chain(*((i, v) for i, v in enumerate(row) if v))])


def decode_scores(blob: bytes) -> ScoreHistogram:
    length, *pairs = _decode(blob)
    row = [0.0] * int(length)
    for index, value in zip(pairs[::2], pairs[1::2], strict=True):
        row[int(index)] = value
    return ScoreHistogram.from_row(row)


def window(db: "Database", series: Series, view: TimeView, spans: Iterable[Span]) -> Window:
    """The sum over the spans' buckets."""
    prefix = _PREFIX[view]
    columns = ", ".join(_totals(prefix))
    counts, histograms = Counts(), []
    for span in spans:
        where = (*series, span.resolution, span.start, span.end)
        tp, tn, fp, fn = db.execute(
            f"SELECT {columns} FROM buckets WHERE {_RANGE}", where
        ).fetchone()
        counts += Counts(int(tp), int(tn), int(fp), int(fn))
        histograms += [decode_scores(blob) for (blob,) in db.execute(
            f"SELECT {prefix}scores FROM buckets WHERE {_RANGE} AND {prefix}scores IS NOT NULL",
            where,
        )]  # fmt: skip
    return Window(counts, ScoreHistogram.combined(histograms) if histograms else None)


def points(db: "Database", series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
    """The counts of each ``step`` seconds from the span's start on, where there are any."""
    totals = _totals(_PREFIX[view])
    rows = db.execute(
        # A row may hold outcomes of the other view only: a step of such rows has none here.
        f"SELECT (start - ?) / ? AS step, {', '.join(totals)} FROM buckets WHERE {_RANGE}"
        f" GROUP BY step HAVING {' + '.join(totals)} > 0 ORDER BY step",
        (span.start, step, *series, span.resolution, span.start, span.end),
    )
    return [
        (span.start + index * step, Counts(int(tp), int(tn), int(fp), int(fn)))
        for index, tp, tn, fp, fn in rows
    ]


def _totals(prefix: str) -> list[str]:
    return [f"coalesce(sum({prefix}{cell}), 0)" for cell in ("tp", "tn", "fp", "fn")]


def drop_before(db: "Database", cutoffs: Mapping[int, float]) -> None:
    """Delete the buckets of each resolution that start before its cutoff."""
    db.executemany("DELETE FROM buckets WHERE resolution = ? AND start < ?", list(cutoffs.items()))
