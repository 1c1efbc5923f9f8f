"""Benchmarks, not tests: raw PyMongo vs raw Beanie vs insightdb, side by side.

``make bench`` (``python -m bench.run``) runs them and writes ``docs/benchmarks.md``. The
pieces: :mod:`bench.harness` (rounds, interleaving, statistics), :mod:`bench.canned_server`
(a wire-protocol server that answers from memory), :mod:`bench.stack` and
:mod:`bench.models` (the implementations on one server), :mod:`bench.scenarios`,
:mod:`bench.report`, and one ``bench_*.py`` script per issue-specific figure.
"""
