"""The one exception type that means "the user asked for something impossible".

The CLI turns a :class:`LooplmError` into a single line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""


class LooplmError(ValueError):
    """Bad input: the message names the problem and how to fix it."""
