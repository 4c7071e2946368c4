"""Trainable-plugin adapters, one module per engine; each registers a factory with
`training.api.register_adapter` (see training/api.py for the contract)."""
