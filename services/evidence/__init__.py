"""Evidence for supervisors: findings (督导记录), signed evidence exports, and the package format
with its offline verifier (docs/exports.md)."""
