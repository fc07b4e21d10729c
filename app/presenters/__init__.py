"""Presenters: what the CLI and the GUI both do around a service call, written once.

Pure Python (no Qt, no printing): a front end calls these and renders what they return,
the CLI as printed lines, the GUI in its dialogs and pages.
"""
