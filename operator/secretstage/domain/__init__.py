"""The promotion domain: request parsing and validation, planning, outcomes, status. Pure: no I/O."""
