"""Speed and memory benchmarks per backend: ``python -m bench all`` (see docs/benchmarks.md).

Every model measurement runs in a fresh subprocess (bench.train_step) so peak memory and thread settings of one
(backend, model, size) never leak into another. Nothing here asserts a speed; the goals are reported, not tested.
"""
