"""The one exception type that means "the user gave us something wrong"."""


class UserError(ValueError):
    """Bad input from the user: a flag, a data file, a train dir.

    The command-line entry points turn it into one line on stderr and a
    non-zero exit, so the message must name the problem and the way out.
    """
