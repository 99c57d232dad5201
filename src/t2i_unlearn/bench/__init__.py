"""Benches: suites (YAML) of methods x attacks on one model, run as cached, resumable stages.

- :mod:`~t2i_unlearn.bench.spec`: the suite format and its loader (no torch);
- :mod:`~t2i_unlearn.bench.plan`: a suite resolved against the registries and prompt files, its cost
  estimate and ``plan.json`` (no torch: ``bench --dry-run``);
- :mod:`~t2i_unlearn.bench.engine`: the stages (pairs, training, attacks, evaluations) and the results;
- :mod:`~t2i_unlearn.bench.picture`: the before/after picture the demo shows.

    from t2i_unlearn.bench import make_plan, run_bench
    results = run_bench(make_plan("demo"), "t2i_unlearn_demo")
"""

from t2i_unlearn.bench.plan import BenchPlan, make_plan
from t2i_unlearn.bench.spec import BenchSuite, bench_suite_names, load_bench_suite

__all__ = ["BenchPlan", "BenchSuite", "bench_suite_names", "load_bench_suite", "make_plan", "run_bench"]


def __getattr__(name: str) -> object:
    if name == "run_bench":
        from t2i_unlearn.bench.engine import run_bench

        return run_bench
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
