"""fastnn's benchmarks: pytest-benchmark suites, asv suites and the comparison driver."""
