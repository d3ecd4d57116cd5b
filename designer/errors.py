"""One error type for everything a user can get wrong.

A DesignError carries a message that names where the problem is (a layer, a
field, a file) and what is wrong; the CLI prints it as one line and the app
shows it next to the input, never a traceback.
"""


class DesignError(ValueError):
    """Bad user input: a design, a cfglist, an option or a file."""

    def __init__(self, message: str, where: str | None = None):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}" if where else message)
