"""Operator tools run from a workstation with the deployer's credentials (never shipped to AWS)."""
