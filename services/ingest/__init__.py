"""Ingest: one recording file in, evidence or quarantine out: probe, clock, pipeline, spool,
quarantine, the worker that drives them, and the camera host's push client (docs/ingest.md)."""
