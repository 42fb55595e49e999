"""Development and test tooling for doks-access-operator (never imported by the operator itself)."""
