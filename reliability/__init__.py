"""Reliability suites (issue 9): a continuity soak and fault injection, with figures.

``python -m reliability`` (``make soak``, ``make chaos``) runs them against a local control plane
whose API server really enforces every credential the operator writes; ``RELIABILITY.md`` records
what they found.
"""
