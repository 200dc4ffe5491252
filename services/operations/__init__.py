"""Operations: readiness checked in the background, and the figures /metrics exposes."""
