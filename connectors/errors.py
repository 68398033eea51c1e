"""The root of lakeport's own errors: their messages are written for users and hold no secrets."""


class LakeportError(Exception):
    """An error the CLI prints as one line, without a traceback."""
