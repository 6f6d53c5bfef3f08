"""The notebooks here are fixtures run by tests/test_reports.py, not tests for nbval."""

collect_ignore_glob = ["*.ipynb"]
