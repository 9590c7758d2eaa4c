"""The benchmarks' CPU accounting (``bench/cpu.py``) against the interpreter's own clock."""

import os
import time

from bench.cpu import machine_busy, process_cpu

TICK = 1 / os.sysconf("SC_CLK_TCK")


def spin(seconds: float) -> float:
    """Burn about ``seconds`` of this process's CPU; the CPU it took."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return time.process_time() - start


def test_a_process_cpu_and_the_machine_busy_time_count_what_it_spent() -> None:
    process, machine = process_cpu(os.getpid()), machine_busy()
    spent = spin(0.3)
    process, machine = process_cpu(os.getpid()) - process, machine_busy() - machine
    assert abs(process - spent) <= 3 * TICK
    assert machine >= spent - 3 * TICK  # the whole machine: at least this process
