"""Dashboards: published notebooks rendered by Voilà for viewers."""
