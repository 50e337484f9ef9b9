"""A local Alibaba Cloud KMS (Secrets Manager) emulator for tests, demos and pipelines."""
