"""Shared test rigs: what several test modules need (no test module imports another)."""
