"""The project's error type: a mistake in what the user gave us, as opposed to a bug.

Every check of user input (a config value, a data or checkpoint file, a video, a command-line option) raises a
:class:`VidmambaError` whose message names the file or key and says what was expected; ``vidmamba`` prints it as one
line. Any other exception is a bug and keeps its traceback. The subclasses also derive from the built-in type that
describes them (``ValueError``, ``FileNotFoundError``), so callers may catch either.
"""
from __future__ import annotations


class VidmambaError(Exception):
    """A user's mistake; the message says which file / key and what was expected."""


class InputError(VidmambaError, ValueError):
    """A bad value: a config key or option, an argument combination, a query."""


class ConfigError(InputError):
    """A config file, section, key or value that cannot be used; the message names the file and ``section.key``."""


class ConfigTypeError(ConfigError, TypeError):
    """A config key that does not exist, or a value of the wrong type (also a ``TypeError``, as Python's own
    "unexpected keyword" and type errors are)."""


class MissingFileError(VidmambaError, FileNotFoundError):
    """A file or folder the user named does not exist (or is of the wrong kind: a folder where a file is needed)."""


class MissingExtraError(VidmambaError, ImportError):
    """An optional dependency of the command is not installed; the message names the extra that installs it."""


def require_extra(module: str, extra: str, what: str):
    """``import module``, or a :class:`MissingExtraError` naming ``pip install 'vidmamba[extra]'`` (``what``: the
    feature that needs it)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{what} needs {module.split('.')[0]}, which is not installed: "
                                f"pip install 'vidmamba[{extra}]'") from e


__all__ = ["ConfigError", "ConfigTypeError", "InputError", "MissingExtraError", "MissingFileError", "VidmambaError", "require_extra"]
