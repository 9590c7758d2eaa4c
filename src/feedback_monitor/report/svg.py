"""The report's charts as inline SVG: plain shapes, no script, nothing fetched.

Each chart is one ``<svg>`` element, well-formed XML, its text escaped.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from feedback_monitor.report import steps
from feedback_monitor.report.numbers import count, day, estimate, moment, ratio
from feedback_monitor.schemas import DriftEventAnswer, PointAnswer

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 40, 16, 40
TICKS = 6  # most day labels on the time axis
CHARACTER = 7.0  # the width of a tick label's character, about, in pixels (11px font)
CELLS = (
    ("tp", "True positives", "#2e7d32"),
    ("tn", "True negatives", "#81c784"),
    ("fp", "False positives", "#ef6c00"),
    ("fn", "False negatives", "#c62828"),
)


def tag(name: str, content: str = "", **attributes: object) -> str:
    """An element; attribute names take ``-`` for ``_``; values and ``content`` are trusted
    markup, so callers escape text."""
    pairs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{escape(str(value))}"'
        for key, value in attributes.items()
    )
    return f"<{name}{pairs}>{content}</{name}>" if content else f"<{name}{pairs}/>"


@dataclass(frozen=True)
class Frame:
    """Where the plot area is, and how times and values map onto it."""

    start: float
    end: float
    top: float  # the value at the top of the plot

    def x(self, seconds: float) -> float:
        share = (seconds - self.start) / (self.end - self.start)
        return round(LEFT + share * (WIDTH - LEFT - RIGHT), 2)

    def y(self, value: float) -> float:
        share = value / self.top if self.top else 0.0
        return round(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM), 2)

    def edges(self, point: PointAnswer, step: int) -> tuple[float, float]:
        """Where a point's step starts and ends, cut to the period: its first and last step may
        be parts of one (a period that ends at 10:00 has 10 hours of its last day)."""
        return self.x(max(point.start, self.start)), self.x(min(point.start + step, self.end))

    def middle(self, point: PointAnswer, step: int) -> float:
        return sum(self.edges(point, step)) / 2


def _svg(label: str, content: str) -> str:
    return tag(
        "svg",
        tag("title", escape(label)) + content,
        viewBox=f"0 0 {WIDTH} {HEIGHT}",
        width=WIDTH,
        height=HEIGHT,
        role="img",
        aria_label=label,
        class_="chart",
    )


def _axes(frame: Frame, step: int, values: Sequence[float], labels: Sequence[str]) -> str:
    parts = [
        tag("line", x1=LEFT, x2=WIDTH - RIGHT, y1=frame.y(v), y2=frame.y(v), class_="grid")
        + tag("text", escape(text), x=LEFT - 6, y=frame.y(v) + 4, class_="tick-y")
        for v, text in zip(values, labels, strict=True)
    ]
    days = int((frame.end - frame.start + step - 1) // step)
    starts = [frame.start + index * step for index in range(days)]
    texts = [day(start) for start in starts]
    # Each label starts at its step's start; a time in them (a period that does not start at
    # midnight) makes them twice as wide, so fewer fit without overlapping.
    room = (WIDTH - LEFT - RIGHT) / (max(map(len, texts), default=1) * CHARACTER + 12)
    every = max(1, -(-days // max(1, min(TICKS, int(room)))))
    for start, text in list(zip(starts, texts, strict=True))[::every]:
        if frame.x(start) + len(text) * CHARACTER > WIDTH:
            break  # past the right edge: cut off
        parts.append(
            tag("text", escape(text), x=frame.x(start), y=HEIGHT - BOTTOM + 16, class_="tick-x")
        )
    return "".join(parts)


def _runs(points: Sequence[PointAnswer], step: int) -> list[list[PointAnswer]]:
    """Points in runs of consecutive steps: a line does not cross a day without data."""
    runs: list[list[PointAnswer]] = []
    for point in points:
        if runs and point.start - runs[-1][-1].start == step:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def accuracy_chart(
    points: Sequence[PointAnswer],
    start: float,
    end: float,
    step: int,
    events: Sequence[DriftEventAnswer] = (),
) -> str:
    """Accuracy per step with its Wilson 95% band, drift events as vertical lines."""
    frame = Frame(start, end, 1.0)
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    parts = [_axes(frame, step, grid, [f"{v:.2f}" for v in grid])]
    for run in _runs(points, step):
        parts.append(_band(frame, run, step))
    for event in events:
        parts.append(_drift_line(frame, event))
    for point in points:
        parts.append(_dot(frame, point, step))
    return _svg(f"Accuracy per {steps.name(step)} with its 95% interval", "".join(parts))


def _band(frame: Frame, run: Sequence[PointAnswer], step: int) -> str:
    xs = [frame.middle(p, step) for p in run]
    highs = [frame.y(_bound(p.metrics.accuracy.high, p)) for p in run]
    lows = [frame.y(_bound(p.metrics.accuracy.low, p)) for p in run]
    if len(run) == 1:  # a lone day: its interval as a bar
        return tag("line", x1=xs[0], x2=xs[0], y1=highs[0], y2=lows[0], class_="interval")
    outline = [*zip(xs, highs, strict=True), *reversed(list(zip(xs, lows, strict=True)))]
    line = [(x, frame.y(p.metrics.accuracy.value)) for x, p in zip(xs, run, strict=True)]
    return tag("polygon", points=_path(outline), class_="band") + tag(
        "polyline", points=_path(line), class_="line"
    )


def _bound(value: float | None, point: PointAnswer) -> float:
    return point.metrics.accuracy.value if value is None else value


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def _dot(frame: Frame, point: PointAnswer, step: int) -> str:
    label = f"{day(point.start)}: accuracy {estimate(point.metrics.accuracy)}, n {count(point.n)}"
    return tag(
        "circle",
        tag("title", escape(label)),
        cx=frame.middle(point, step),
        cy=frame.y(point.metrics.accuracy.value),
        r=3,
        class_="dot",
    )


def _drift_line(frame: Frame, event: DriftEventAnswer) -> str:
    x = frame.x(event.time)
    label = f"drift at {moment(event.time)}: {event.detector}, statistic {ratio(event.statistic)}"
    return tag(
        "line", tag("title", escape(label)), x1=x, x2=x, y1=TOP, y2=HEIGHT - BOTTOM, class_="drift"
    )


def volume_chart(points: Sequence[PointAnswer], start: float, end: float, step: int) -> str:
    """Labelled outcomes per step, stacked by confusion cell."""
    top = max((p.n for p in points), default=0) or 1
    frame = Frame(start, end, top)
    ticks = sorted({0, top // 2, top})
    parts = [_axes(frame, step, ticks, [count(t) for t in ticks])]
    for point in points:
        parts.append(_stack(frame, point, step))
    parts.append(_legend())
    return _svg(f"Labelled outcomes per {steps.name(step)} by confusion cell", "".join(parts))


def _stack(frame: Frame, point: PointAnswer, step: int) -> str:
    """The point's bars: 70% as wide as its step within the period, centred on it."""
    left, right = frame.edges(point, step)
    width = max(1.0, (right - left) * 0.7)  # seen, however short its part of the period
    x = min(max((left + right - width) / 2, LEFT), WIDTH - RIGHT - width)
    below, bars = 0, []
    for name, label, colour in CELLS:
        value = getattr(point.counts, name)
        if value:
            title = tag("title", escape(f"{day(point.start)}: {label.lower()} {count(value)}"))
            y = frame.y(below + value)
            bars.append(
                tag(
                    "rect",
                    title,
                    x=round(x, 2),
                    y=y,
                    width=round(width, 2),
                    height=round(frame.y(below) - y, 2),
                    fill=colour,
                )
            )
            below += value
    return "".join(bars)


def _legend() -> str:
    parts = []
    for index, (_, label, colour) in enumerate(CELLS):
        x = LEFT + index * 150
        parts.append(tag("rect", x=x, y=HEIGHT - 16, width=10, height=10, fill=colour))
        parts.append(tag("text", escape(label), x=x + 14, y=HEIGHT - 7, class_="legend"))
    return "".join(parts)
