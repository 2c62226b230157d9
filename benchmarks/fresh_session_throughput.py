"""Small independent programs, each in a fresh session (create, execute, close): CodeRunner vs `python3 -` each."""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _util import emit, summary, wait_for_pool

from coderunner import CodeRunner

N = int(os.environ.get("BENCH_N", "164"))  # HumanEval's count
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
BACKENDS = [b.strip() for b in os.environ.get("BENCH_BACKENDS", "inprocess,inprocess-spawn").split(",") if b.strip()]

PASSED, ASSERTION_FAILED, OTHER_ERROR = "passed", "assertion_failed", "other_error"

# Small HumanEval-like tasks: (function source, its name, the arguments of its asserts for program i).
_TASKS: list[tuple[str, str, Callable[[int], list[tuple[Any, ...]]]]] = [
    (
        "def sum_squares(n):\n    return sum(k * k for k in range(n))\n",
        "sum_squares",
        lambda i: [(i,), (i + 3,), (2 * i + 1,)],
    ),
    (
        "def reverse_words(s):\n    return ' '.join(reversed(s.split()))\n",
        "reverse_words",
        lambda i: [(" ".join(f"w{j}" for j in range(i % 6 + 1)),), ("a b",), ("",)],
    ),
    (
        "def is_prime(n):\n    if n < 2:\n        return False\n"
        "    return all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
        "is_prime",
        lambda i: [(i,), (i + 1,), (97 + i,)],
    ),
    (
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "fib",
        lambda i: [(i % 30,), (i % 7,), (40 + i % 5,)],
    ),
    (
        "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n",
        "count_vowels",
        lambda i: [("Programming" * (i % 4 + 1),), ("xyz",), (f"AEIOU{i}",)],
    ),
    (
        "def running_max(xs):\n    out, best = [], None\n    for x in xs:\n"
        "        best = x if best is None or x > best else best\n        out.append(best)\n    return out\n",
        "running_max",
        lambda i: [([(i * 7 + k * 13) % 17 for k in range(8)],), ([],), ([i],)],
    ),
    (
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
        "gcd",
        lambda i: [(12 * (i + 1), 18), (i + 7, 0), (2**i % 1000 + 1, 24)],
    ),
    (
        "def histogram(words):\n    counts = {}\n    for w in words:\n        counts[w] = counts.get(w, 0) + 1\n"
        "    return dict(sorted(counts.items()))\n",
        "histogram",
        lambda i: [(["a", "b", "a", str(i % 3)],), ([],), (list("banana"),)],
    ),
]

# Raised on purpose by some programs: an expression per exception class.
_RAISERS = [
    "1 // (len('x') - 1)",  # ZeroDivisionError
    "{}['missing']",  # KeyError
    "[][3]",  # IndexError
    "int('not a number')",  # ValueError
    "len(5)",  # TypeError
    "undefined_name + 1",  # NameError
]


def _wrong(value: Any) -> Any:
    """A value of the same kind that is not ``value`` (for asserts that fail on purpose)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return [*value, 0]
    if isinstance(value, dict):
        return {**value, "?": 1}
    return None


@dataclass(frozen=True)
class Program:
    """One generated program and the verdict it was written to get."""

    id: str
    code: str
    intended: str


def programs(n: int) -> list[Program]:
    """``n`` deterministic programs: about 1 in 10 fails an assert, about 1 in 12 raises, the rest pass."""
    out = []
    for i in range(n):
        source, name, args_of = _TASKS[i % len(_TASKS)]
        namespace: dict[str, Any] = {}
        exec(source, namespace)  # the reference answers come from the same source the program runs
        asserts = []
        for args in args_of(i):
            expected = namespace[name](*args)
            call = f"{name}({', '.join(map(repr, args))})"
            asserts.append(f"assert {call} == {expected!r}, {call!r}")
        intended = PASSED
        if i % 10 == 3:
            args = args_of(i)[-1]
            call = f"{name}({', '.join(map(repr, args))})"
            asserts[-1] = f"assert {call} == {_wrong(namespace[name](*args))!r}, {call!r}"
            intended = ASSERTION_FAILED
        elif i % 12 == 5:
            asserts.insert(1, f"_ = {_RAISERS[(i // 12) % len(_RAISERS)]}")
            intended = OTHER_ERROR
        body = "\n".join(asserts)
        code = f"# program {i}\n{source}\nprint('start {i}')\n{body}\nprint('done {i}')\n"
        out.append(Program(id=f"p{i:03d}", code=code, intended=intended))
    return out


@dataclass(frozen=True)
class Outcome:
    """What one run of one program gave, and how long its phases took (ms)."""

    verdict: str
    error: str
    stdout: str
    total_ms: float
    phases_ms: dict[str, float]


def subprocess_run(program: Program) -> Outcome:
    """The baseline: a fresh interpreter per program, the program on stdin."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-"], input=program.code, capture_output=True, text=True, check=False)
    total = (time.perf_counter() - t) * 1000
    last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
    name = last.split(":", 1)[0].strip() if proc.returncode else ""
    if proc.returncode == 0:
        verdict = PASSED
    elif name == "AssertionError":
        verdict = ASSERTION_FAILED
    else:
        verdict = OTHER_ERROR
    return Outcome(verdict, name, proc.stdout, total, {})


def coderunner_run(runner: CodeRunner, program: Program) -> Outcome:
    """A fresh session per program: created, the program executed, closed."""
    t0 = time.perf_counter()
    session = runner.session()
    t1 = time.perf_counter()
    try:
        result = session.execute(program.code)
        t2 = time.perf_counter()
    finally:
        session.close()
    t3 = time.perf_counter()
    name = result.error.name if result.error is not None else ""
    if result.status == "ok" and result.error is None:
        verdict = PASSED
    elif name == "AssertionError":
        verdict = ASSERTION_FAILED
    else:
        verdict = OTHER_ERROR
    phases = {"create": (t1 - t0) * 1000, "execute": (t2 - t1) * 1000, "close": (t3 - t2) * 1000}
    return Outcome(verdict, name, result.stdout, (t3 - t0) * 1000, phases)


def run_all(run_one: Callable[[Program], Outcome], progs: list[Program]) -> tuple[float, dict[str, Outcome]]:
    """Run every program on ``WORKERS`` threads; the wall time in seconds and each program's outcome."""
    with concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-worker") as workers:
        t = time.perf_counter()
        outcomes = list(workers.map(run_one, progs))
        wall = time.perf_counter() - t
    return wall, {p.id: o for p, o in zip(progs, outcomes, strict=True)}


def docker_unavailable(runtime: str | None) -> str | None:
    """Why the Docker variant cannot run here (None: it can)."""
    from coderunner.errors import BackendUnavailableError, MissingDependencyError

    try:
        from coderunner.backends.docker import connect

        client = connect()
    except (MissingDependencyError, BackendUnavailableError) as exc:
        return f"skipped: no Docker engine answers (`docker info` fails): {exc.message}"
    try:
        if runtime is not None and runtime not in (client.info().get("Runtimes") or {}):
            return f"skipped: the Docker engine has no {runtime!r} runtime (apt-get install runsc; restart dockerd)"
    finally:
        client.close()
    return None


def make_runner(backend: str) -> CodeRunner | str:
    """The runner for a ``BENCH_BACKENDS`` entry, or the reason it is skipped."""
    if backend == "inprocess":
        return CodeRunner()  # Python kernels forked from the fork server where the system can
    if backend == "inprocess-spawn":
        return CodeRunner(kernel_start="spawn")  # a fresh interpreter per kernel (the fallback, and the old way)
    if backend in ("docker", "docker-runsc"):
        runtime = "runsc" if backend == "docker-runsc" else None
        reason = docker_unavailable(runtime)
        if reason is not None:
            return reason
        return CodeRunner(backend="docker", runtime=runtime) if runtime else CodeRunner(backend="docker")
    return f"skipped: unknown backend {backend!r} (use inprocess, inprocess-spawn, docker, docker-runsc)"


COLD = int(os.environ.get("BENCH_COLD", "5"))
REFILL = int(os.environ.get("BENCH_REFILL", "4"))


def docker_start_figures(backend: str) -> dict[str, Any]:
    """A cold container (no pool) to its first result, and how fast a pool of REFILL containers fills."""
    runtime = {"runtime": "runsc"} if backend == "docker-runsc" else {}
    cold: list[float] = []
    with CodeRunner(backend="docker", pool_size=0, **runtime) as runner:
        with runner.session() as first:  # image checked, daemon connection made
            first.execute("pass")
        for _ in range(COLD):
            t = time.perf_counter()
            with runner.session() as session:
                result = session.execute("print(1)")
                cold.append((time.perf_counter() - t) * 1000)
            assert result.stdout == "1\n", result
    t = time.perf_counter()
    with CodeRunner(backend="docker", pool_size=REFILL, **runtime) as runner:
        runner.backend._fleet.fill_pool()  # type: ignore[attr-defined]
        full = wait_for_pool(runner, timeout=300)
        fill_s = time.perf_counter() - t
    return {
        "cold_container_session_to_first_result": summary(cold),
        "pool_refill": {
            "containers": REFILL,
            "seconds_to_full_from_runner_start": round(fill_s, 3),
            "containers_per_s": round(REFILL / fill_s, 3),
            "filled": full,
        },
    }


def measure_backend(backend: str, progs: list[Program], baseline: dict[str, Outcome], base_rate: float) -> Any:
    runner = make_runner(backend)
    if isinstance(runner, str):
        return runner
    try:
        with runner.session() as warm:  # engine (or image, daemon connection) ready; the pool refills
            warm.execute("pass")
        pool_full = wait_for_pool(runner)
        wall, outcomes = run_all(lambda p: coderunner_run(runner, p), progs)
    finally:
        runner.close()
    disagreements = {
        pid: {"coderunner": o.verdict, "subprocess": baseline[pid].verdict}
        for pid, o in outcomes.items()
        if o.verdict != baseline[pid].verdict
    }
    stdout_differs = sorted(pid for pid, o in outcomes.items() if o.stdout != baseline[pid].stdout)
    rate = len(progs) / wall
    extra = docker_start_figures(backend) if backend.startswith("docker") else {}
    phases = {
        name: round(statistics.median(o.phases_ms[name] for o in outcomes.values()), 3)
        for name in ("create", "execute", "close")
    }
    return {
        "pool_size": runner.settings.pool_size,
        "pool_full_at_start": pool_full,
        "programs_per_s": round(rate, 2),
        "ratio_to_subprocess": round(rate / base_rate, 3),
        "per_session_create_execute_close": summary([o.total_ms for o in outcomes.values()]),
        "per_session_phase_medians_ms": phases,
        "verdict_disagreements": len(disagreements),
        "disagreeing_ids": disagreements,
        "stdout_differs_ids": stdout_differs,
        **extra,
    }


if __name__ == "__main__":
    progs = programs(N)
    subprocess_run(progs[0])  # interpreter and its files in the page cache
    base_wall, baseline = run_all(subprocess_run, progs)
    base_rate = len(progs) / base_wall
    verdicts = {v: sum(1 for o in baseline.values() if o.verdict == v) for v in (PASSED, ASSERTION_FAILED, OTHER_ERROR)}
    unintended = sorted(p.id for p in progs if baseline[p.id].verdict != p.intended)
    results = {backend: measure_backend(backend, progs, baseline, base_rate) for backend in BACKENDS}
    emit(
        "fresh_session_throughput",
        {
            "programs": N,
            "workers": WORKERS,
            "baseline_verdicts": verdicts,
            "baseline_verdicts_not_as_intended": unintended,
            "baseline_fresh_python3_stdin_per_program": {
                "interpreter": sys.executable,
                "programs_per_s": round(base_rate, 2),
                "per_program": summary([o.total_ms for o in baseline.values()]),
            },
            **{f"coderunner_{backend}": figures for backend, figures in results.items()},
            "note": "each program in a fresh session (create -> execute -> close); verdicts must all agree (0)",
        },
    )
    sys.exit(1 if any(isinstance(r, dict) and r["verdict_disagreements"] for r in results.values()) else 0)
