"""Speed and memory benchmarks, run from the checkout as `python -m benchmarks.<name>`."""
