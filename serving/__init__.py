"""serving: what serving needs and no Trainer runs (see docs/architecture.md)."""
