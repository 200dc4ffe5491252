"""Witnesses: independent parties that cosign the centre's checkpoints (docs/ledger.md)."""
