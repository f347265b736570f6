"""The exception that means "the user gave us something wrong", and the words of its fix."""

import os
import shlex


class UserError(ValueError):
    """Bad input from the user: a flag, a data file, a train dir.

    The command-line entry points turn it into one line on stderr and a
    non-zero exit, so the message must name the problem and the way out.
    """


class Interrupted(Exception):
    """Training stopped by a signal after saving; the entry point exits with ``exit_code``."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error):
    """The first line of an exception's message (TensorFlow's run to many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def said(flag_words, make_words):
    """The fix in the words of the command the user ran: ``make`` targets set
    TRAINKIT_VIA=make, so their users read make commands, not flags."""
    return make_words if os.environ.get("TRAINKIT_VIA") == "make" else flag_words


def eval_command(dataset, train_dir, args=""):
    """The evaluator's command for ``train_dir``, in the words of the command the user ran."""
    quoted, extra = shlex.quote(train_dir), f" {args}" if args else ""
    return said(f"python -m {dataset}.eval --train_dir={quoted}{extra}",
                f"make eval TRAIN_DIR={quoted}" + (f" ARGS={args}" if args else ""))
