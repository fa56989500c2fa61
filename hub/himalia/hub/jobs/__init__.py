"""Scheduled notebook jobs: definitions, runs, the runner that executes them with papermill."""
