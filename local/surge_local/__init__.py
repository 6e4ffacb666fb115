"""The local stack, never shipped: `make run`'s launcher, the AWS emulator, provisioning, child supervision."""
