"""The local stack, never shipped: `make run`'s launcher, the AWS emulator, provisioning, child supervision."""

SERVICES = ("sqs", "dynamodb")
"""The AWS services the stack uses; the launcher runs one emulator process for each."""
FIDELITY_VARIABLE = "SURGE_EMULATOR_FIDELITY"
"""Set to 1: the emulator models DynamoDB's per-item conflicts and throughput caps (`surge_local.fidelity`)."""
