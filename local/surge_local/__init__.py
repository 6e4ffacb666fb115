"""The local stack, never shipped: `make run`'s launcher, the AWS emulator, provisioning, child supervision."""

SERVICES = ("sqs", "dynamodb")
"""The AWS services the stack uses; the launcher runs one emulator process for each."""
ALSO_SERVED = {"dynamodb": ("s3",)}
"""Services an emulator process serves besides its own: S3 (files, a few calls per job that has any)
on the DynamoDB one, which `AWS_ENDPOINT_URL` (every service without its own variable) reaches."""
FIDELITY_VARIABLE = "SURGE_EMULATOR_FIDELITY"
"""Set to 1: the emulator models DynamoDB's per-item conflicts and throughput caps (`surge_local.fidelity`)."""
