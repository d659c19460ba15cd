"""The base of every error devmode raises for a person to read.

Pages show ``str(error)`` with ``st.error``; the CLI turns it into a ``click.ClickException``.
Each message says what was expected, what was found and what to do. The specific errors live
next to the code that raises them (``ingest.InvalidUpload``, ``ingest.NoSuchDataset``, ...).
"""


class DevmodeError(ValueError):
    """A problem with what a person asked for, explained in words; never a bug in devmode."""


def in_words(error: BaseException, limit: int = 300) -> str:
    """What went wrong, for a health line or a log: a ``DevmodeError``'s own message, or the
    type and the start of the message of one nobody planned for."""
    if isinstance(error, DevmodeError):
        return str(error)
    return f"{type(error).__name__}: {str(error)[:limit]}"
