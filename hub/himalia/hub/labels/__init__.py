"""Labeling: label sets, per-annotator queues, annotations, agreement and snapshots."""
