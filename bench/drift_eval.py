"""Issue 5's figures: the drift detectors against river's at its defaults, on seeded streams.

Synthetic Bernoulli error streams (1 = wrong): abrupt drops in accuracy 0.90 to 0.80 and 0.90
to 0.70 and a gradual 0.90 to 0.80 over 2,000 samples, each after 5,000 stable samples; and
stationary streams of 20,000 samples at accuracies 0.6, 0.8, 0.9, 0.95 and 0.99, each fed to
a fresh detector so that the start-up after a reset counts in the false alarms. Per detector
and block size (ours fed 1 and 32 samples per update, river's one at a time): detection rate,
median and p90 delay in samples after the change starts, and false alarms per 100,000
stationary samples.
``--calibrate`` sweeps the thresholds on other seeds, the sweep the defaults were chosen from.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from river import drift as river_drift

from feedback_monitor.drift import ADWIN, DDM, PageHinkley, ProportionTest

Errors = npt.NDArray[np.int64]

ACCURACIES = (0.6, 0.8, 0.9, 0.95, 0.99)
STATIONARY = 20_000  # samples per stationary stream, from a fresh detector
STREAMS = 10  # stationary streams per accuracy: 1,000,000 samples in all
RUNS = 40  # seeded streams per drift scenario
STABLE, AFTER, RAMP = 5_000, 5_000, 2_000
BUDGET = 1.0  # false alarms per 100,000 stationary samples
SCENARIOS = ("0.90->0.80", "0.90->0.70", "gradual 0.90->0.80")
ABRUPT = SCENARIOS[:2]


OURS: dict[str, Callable[..., Any]] = {
    "ADWIN": ADWIN,
    "DDM": DDM,
    "PageHinkley": PageHinkley,
    "ProportionTest": ProportionTest,
}
RIVER: dict[str, Callable[..., Any]] = {
    "river ADWIN": river_drift.ADWIN,
    "river DDM": river_drift.binary.DDM,
    "river PageHinkley": river_drift.PageHinkley,
}
FACTORIES = OURS | RIVER


@dataclass(frozen=True)
class Row:
    name: str
    block: int
    delays: dict[str, list[int | None]]
    false_alarms: float  # per 100,000 stationary samples
    worst_accuracy: float

    def rate(self, scenario: str) -> float:
        found = self.delays[scenario]
        return sum(d is not None for d in found) / len(found)

    def percentile(self, scenario: str, q: int) -> float:
        found = sorted(d for d in self.delays[scenario] if d is not None)
        return float(np.percentile(found, q)) if found else float("nan")


def errors(accuracy: npt.NDArray[np.float64], seed: int) -> Errors:
    rng = np.random.default_rng(seed)
    return (rng.random(len(accuracy)) >= accuracy).astype(np.int64)


def drift_accuracy(scenario: str) -> npt.NDArray[np.float64]:
    after = 0.80 if scenario.endswith("0.80") else 0.70
    ramp = np.linspace(0.90, after, RAMP if scenario.startswith("gradual") else 0)
    tail = np.full(AFTER - len(ramp), after)
    return np.concatenate([np.full(STABLE, 0.90), ramp, tail])


def alarms(detector: Any, stream: Errors, block: int) -> Iterator[int]:
    """Sample counts at which the detector reported a drift."""
    if block == 1:
        for index, x in enumerate(stream.tolist(), 1):
            detector.update(x)
            if detector.drift_detected:
                yield index
        return
    whole = stream[: len(stream) - len(stream) % block]
    for index, count in enumerate(whole.reshape(-1, block).sum(axis=1).tolist(), 1):
        detector.update_many(block, count)
        if detector.drift_detected:
            yield index * block


def delay(make: Callable[[], Any], scenario: str, block: int, seed: int) -> int | None:
    stream = errors(drift_accuracy(scenario), seed)
    after = (at - STABLE for at in alarms(make(), stream, block) if at > STABLE)
    return next(after, None)


def false_alarms(make: Callable[[], Any], block: int, seed: int, streams: int) -> dict[float, int]:
    """Alarms on ``streams`` fresh stationary streams per accuracy: start-up counts too."""
    found = {}
    for offset, accuracy in enumerate(ACCURACIES):
        seeds = range(seed + offset * 1_000, seed + offset * 1_000 + streams)
        fresh = (errors(np.full(STATIONARY, accuracy), each) for each in seeds)
        found[accuracy] = sum(len(list(alarms(make(), stream, block))) for stream in fresh)
    return found


def measure(name: str, block: int, seed: int = 0, streams: int = STREAMS, **params: Any) -> Row:
    def make() -> Any:
        return FACTORIES[name](**params)

    delays = {s: [delay(make, s, block, seed + run) for run in range(RUNS)] for s in SCENARIOS}
    found = false_alarms(make, block, seed + 1_000, streams)
    per_100k = sum(found.values()) * 100_000 / (STATIONARY * streams * len(ACCURACIES))
    return Row(name, block, delays, per_100k, max(found, key=found.__getitem__))


def table(rows: list[Row]) -> None:
    head = "".join(f" | {s:^25}" for s in SCENARIOS)
    print(f"{'detector':<18} {'block':>5}{head} | FA/100k")
    print(f"{'':<18} {'':>5}" + " | rate    median      p90" * len(SCENARIOS))
    for row in rows:
        cells = "".join(
            f" | {row.rate(s):4.0%} {row.percentile(s, 50):8.0f} {row.percentile(s, 90):8.0f}"
            for s in SCENARIOS
        )
        print(f"{row.name:<18} {row.block:>5}{cells} | {row.false_alarms:7.2f}")


def goal(rows: list[Row]) -> bool:
    """At no more false alarms than the best river default, a shorter median abrupt delay."""
    river = [row for row in rows if row.name in RIVER]
    best = min(river, key=lambda r: (r.false_alarms, sum(r.percentile(s, 50) for s in ABRUPT)))
    print(f"\nbest river default: {best.name} at {best.false_alarms:.2f} false alarms/100k")
    met = []
    for row in (row for row in rows if row.name in OURS):
        fewer = row.false_alarms <= best.false_alarms
        faster = all(row.percentile(s, 50) < best.percentile(s, 50) for s in ABRUPT)
        within = row.false_alarms <= BUDGET
        verdict = "met" if fewer and faster else "not met"
        print(
            f"{row.name:<15} block {row.block:>2}: goal {verdict} (false alarms "
            f"{'<=' if fewer else '>'} best river, median abrupt delay "
            f"{'shorter' if faster else 'not shorter'}; budget {'kept' if within else 'EXCEEDED'})"
        )
        met.append(fewer and faster)
    return any(met)


def tasks() -> list[tuple[str, int]]:
    return [(name, block) for name in OURS for block in (1, 32)] + [(name, 1) for name in RIVER]


def run_task(task: tuple[str, int]) -> Row:
    return measure(*task)


def main() -> bool:
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(run_task, tasks()))
    print("Drift detectors: detection rate, delay in samples after the change, false alarms")
    stationary = STATIONARY * STREAMS * len(ACCURACIES)
    print(f"({RUNS} seeded streams per scenario, {stationary:,} stationary samples)\n")
    table(rows)
    met = goal(rows)
    print(f"\nissue 5 goal {'met' if met else 'NOT met'}; {time.perf_counter() - start:.0f} s")
    return met


SWEEPS: dict[str, tuple[str, list[Any]]] = {
    "ADWIN": ("delta", [0.002, 0.005, 0.01, 0.02]),
    "DDM": ("warm_start", [1000, 2000, 3000]),
    "PageHinkley": ("threshold", [9.0, 10.0, 11.0, 12.0]),
    "ProportionTest": ("threshold", [4.0, 4.5, 5.0, 5.5]),
}


def calibrate_one(job: tuple[str, str, Any, int]) -> str:
    name, param, value, block = job
    row = measure(name, block, seed=50_000, streams=3 * STREAMS, **{param: value})
    return (
        f"{name:<15} {param}={value:<6} block {block:>2}: FA/100k {row.false_alarms:5.2f} "
        f"(worst at {row.worst_accuracy}), median delays "
        + ", ".join(f"{row.percentile(s, 50):.0f}" for s in SCENARIOS)
    )


def calibrate() -> None:
    jobs = [
        (name, param, value, block)
        for name, (param, values) in SWEEPS.items()
        for value in values
        for block in (1, 32)
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        for line in pool.map(calibrate_one, jobs):
            print(line, flush=True)


if __name__ == "__main__":
    if "--calibrate" in sys.argv:
        calibrate()
    else:
        main()
