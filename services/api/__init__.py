"""HTTP only: one package per domain turns requests into calls of `services/` and back."""
