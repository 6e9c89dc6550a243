"""Subcommands of the ``attnzoo`` command, one module each.

Each module defines ``add_parser(subparsers)``, which adds its subparser and sets ``func`` (called with the
parsed namespace, returning an exit code). :mod:`attnzoo_cli` discovers the modules, so adding a command
means adding a file here. Import nothing heavy at module level (torch, timm, attnzoo): ``attnzoo --help``
imports every module here, so each command imports the library inside its run function. Defaults are
shown in ``--help`` by the shared formatter; a help text need not repeat them.
"""
