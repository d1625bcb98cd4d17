"""Named forms of an option: one registry per key, looked up, never an `if` chain that falls through."""

from __future__ import annotations


class Registry(dict):
    """The allowed values of a key, each mapped to what implements it; an unknown value raises KeyError naming the key
    and the allowed values, wherever it is looked up (the config check, or a function handed a bad option).

    Examples:
        >>> FORMS = Registry("kd_type", binary=binary_kd, softmax=kl_distill)
        >>> FORMS["l2"]  # KeyError: "'kd_type=l2' is not one of ('binary', 'softmax')"
    """

    def __init__(self, key: str, /, **entries):
        """Name the key (e.g. 'kd_type') and register its values."""
        super().__init__(entries)
        self.key = key

    def __missing__(self, value):
        """Raise KeyError naming the key, the value and the allowed values."""
        raise KeyError(f"'{self.key}={value}' is not one of {tuple(self)}")
