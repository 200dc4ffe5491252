"""Footage for reviewers: the segments of a sitting, their original bytes, time-range playback
remuxed without transcoding, and thumbnail strips. Knows files, video and rows, not HTTP."""
