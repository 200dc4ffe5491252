"""Retention: the pure expiry rule (three calendar years, Article 14), legal holds (Article 29)
and the purge that tombstones what has expired (docs/retention.md)."""
