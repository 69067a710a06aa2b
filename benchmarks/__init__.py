"""Performance and load harnesses (run as ``python -m benchmarks.<name>``); figures go to BENCHMARKS.md."""
