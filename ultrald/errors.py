"""ultrald's exceptions: each is a one-line message that names the problem (the CLI prints it and exits 2)."""

from __future__ import annotations


class UltraldError(Exception):
    """A problem with the user's input or run that ultrald can name in one line."""


class TeacherError(UltraldError, ValueError):
    """The teacher cannot distil into this student (missing or unreadable file, other task, classes or strides)."""


class ResumeError(UltraldError, ValueError):
    """A run cannot be resumed as asked (finished checkpoint, moved or different teacher)."""


class NonFiniteError(UltraldError, RuntimeError):
    """Distillation produced NaN/Inf on several batches in a row; the run stops before writing bad weights."""


class DataError(UltraldError, FileNotFoundError):
    """The dataset cannot be used as given: a missing yaml, split path or images, or a relative path on resume."""


class RunInUseError(UltraldError, RuntimeError):
    """Another live run trains into the same run directory (e.g. two runs with the same name and exist_ok=True)."""


class Interrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C): a KeyboardInterrupt (Python callers stop as on Ctrl-C; the CLI exits 130)
    whose message says where last.pt is and how to resume. `last` is the run's last.pt, None when no epoch was saved."""

    def __init__(self, message: str, last=None):
        """Keep the one-line `message` and the checkpoint `last` to resume from."""
        super().__init__(message)
        self.last = last
