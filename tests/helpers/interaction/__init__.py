"""A scripted cluster of election cores, driven by transcript files in ``tests/core/testdata``."""
