"""The one exception type that means "the user asked for something impossible".

The CLI turns a :class:`LooplmError` into a single line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

import re

_BREAK = re.compile(r"\s*\n\s*")


class LooplmError(ValueError):
    """Bad input: the message names the problem and how to fix it. It is kept to one line:
    line breaks (e.g. in a library's error quoted inside it) become spaces."""

    def __init__(self, message: object = ""):
        super().__init__(_BREAK.sub(" ", str(message)))
