"""Developer benchmarks (pytest-benchmark); not part of the CI test run.

    pip install ".[bench]" && pytest benchmarks --benchmark-columns=median,iqr,ops

Each benchmark times one step; compare rows of one run (the machine is shared and noisy).
"""
