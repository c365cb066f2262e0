"""Typed reads of a JSON record (a manifest or a record inside one) for the manifests' ``from_json``.

Each manifest's dataclass (``export/manifest.py``, ``tensorrt/manifest.py``) reads its file through
a ``Record``: a field that is missing or of the wrong type is one ``BasamError`` line naming the
file, the field and the fix the manifest's owner gives (export again, rebuild the engine).
"""

from typing import Any, Mapping, Optional, Tuple, Type, Union

from .errors import BasamError

Kinds = Union[Type, Tuple[Type, ...]]


class Record:
    """One JSON object of the file ``where``; ``path`` names it inside the file ('' at the top)."""

    def __init__(self, data: object, where: str, fix: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise BasamError(f"{where}: {path or 'the manifest'} is not a JSON object: {fix}")
        self.data, self.where, self.fix, self.path = data, where, fix, path

    def get(self, key: str, kind: Kinds, required: bool = True) -> Any:
        """The field ``key`` if it is a ``kind``; None when absent or null and not ``required``."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise BasamError(f"{self.where} has no {self._name(key)}: {self.fix}")
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int to isinstance: a flag given as a number (or the reverse) is malformed.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise BasamError(
                f"{self.where} gives {self._name(key)} {value!r} where {names} is expected: "
                f"{self.fix}"
            )
        return value

    def record(self, key: str, required: bool = True) -> Optional["Record"]:
        """The object at ``key`` as a Record (None when absent and not ``required``)."""
        value = self.get(key, dict, required)
        return None if value is None else Record(value, self.where, self.fix, self._name(key))

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key
