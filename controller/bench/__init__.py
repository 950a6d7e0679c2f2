"""``greenwave bench``: a named, versioned suite of scenarios run under several controllers and
seeds, aggregated into one comparison (pure: :mod:`controller.bench.aggregate`), and checked
against a committed baseline.

    suite.py      the suite file (TOML, validated) and the --seeds / --controllers options
    runner.py     one job per (scenario, controller, seed), in spawned worker processes
    aggregate.py  summaries -> per (scenario, controller) figures, verdicts, baseline check
    report.py     the comparison table, bench.json, bench.csv
"""
