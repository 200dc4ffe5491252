"""The ledger's signing side: Ed25519 key, signed Merkle checkpoints, inclusion and consistency
proofs (docs/ledger.md). The rows and the hashing are in `storage/`."""
