"""Picture health: OpenCV samples of keyframes and their flags (black, frozen, covered, scene
mismatch), and the background checker that stores them (docs/coverage.md)."""
