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
