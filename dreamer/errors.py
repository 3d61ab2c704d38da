"""User-facing errors: one clear line saying what went wrong and how to fix it."""


class DreamerError(Exception):
    """A mistake the user can fix (bad input, missing weights, unreadable file).

    The CLI prints ``str(error)`` on one line and exits non-zero, without a traceback.
    """
