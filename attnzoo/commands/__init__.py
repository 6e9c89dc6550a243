"""Subcommands of the ``attnzoo`` command, one module each.

Each module defines ``add_parser(subparsers)``, which adds its subparser and sets ``func`` (called with the
parsed namespace, returning an exit code). :mod:`attnzoo.cli` discovers the modules, so adding a command
means adding a file here.
"""
