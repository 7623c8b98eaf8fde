"""The conversion tools' error: bad input or refused output, reported in one line."""

from __future__ import annotations


class ConversionError(Exception):
    """Bad input or refused output.

    The message names the file or case and what is wrong with it; the command-line entry points
    print it and exit non-zero without a traceback.
    """
