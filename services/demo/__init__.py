"""Demo data for `make run`, and the synthetic classroom footage generator the demo, the tests
and the benchmarks share."""
