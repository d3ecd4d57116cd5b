"""One error type for everything a user can get wrong.

A DesignError carries a message that names where the problem is (a layer, a
field, a file) and what is wrong; the CLI prints it as one line and the app
shows it next to the input, never a traceback. The line stays short and one
line whatever the user gave: echoed values go through `shown`, and the whole
message is cut at MAX_MESSAGE characters with its line breaks escaped.
"""

MAX_ECHO = 80  # characters of a user's value an error message repeats
MAX_MESSAGE = 400


def shown(value, limit: int = MAX_ECHO) -> str:
    """repr(value), cut to `limit` characters with '...': what an error line echoes of user input."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's int-to-str digit limit
        text = f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_where(where: str, limit: int = 120) -> str:
    """A long place (a file path) keeps its end, the part that tells files apart."""
    return where if len(where) <= limit else "..." + where[-(limit - 3):]


def _one_short_line(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


class DesignError(ValueError):
    """Bad user input: a design, a cfglist, an option or a file."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(_one_short_line(f"{_short_where(str(where))}: {message}" if where else message))
