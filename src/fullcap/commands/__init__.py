"""Implementations of the ``fullcap`` subcommands: plain arguments in, an exit code out.

:mod:`fullcap.cli` parses argv and picks the device; these functions do the work and print
what a user needs to see.
"""
