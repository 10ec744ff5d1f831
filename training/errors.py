"""Errors caused by the user's input: the CLI prints their message in one line and exits 2."""


class UserError(Exception):
    """Bad input (file, config, flag); the message says what is wrong and where."""
