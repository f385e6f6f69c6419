"""Helpers shared by the test modules (no fixtures, no tests): small models and exports, tool checks.

Test modules import shared code only from here; shared trained models, runs and exports come from the
session fixtures of tests/conftest.py, which build them with these helpers.
"""
