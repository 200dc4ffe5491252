"""Coverage (录像完整性): the pure merge-and-verdict rule, the schedule of sittings, the report
of one sitting, and the stored verdict kept up to date (docs/coverage.md)."""
