"""Benchmarks: speed, DigitalOcean API economy and scale, measured against a floor (DESIGN 8).

``make bench`` (``python -m bench``) starts a local control plane (or uses the cluster a kubeconfig
names), a DigitalOcean API emulator with zero added latency, and the operator as a process, runs
the scenarios, prints a table and writes the figures as JSON. Nothing here is a pass/fail test:
targets are compared and reported, and a missed target is a finding, not an error.
"""
