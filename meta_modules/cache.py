"""Each module's cache namespace, on the shared cache (so every process sees the same entries).

Clearing a namespace bumps its version instead of deleting keys one by one: old entries
become unreachable at once and expire by themselves. The tower's CLEAR_CACHE recovery does it.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

_MISSING = object()


class ModuleCache:
    def __init__(self, code: str) -> None:
        self.code = code
        self._version_key = f"module-cache:{code}:version"

    def _version(self) -> int:
        version = cache.get(self._version_key)
        if version is None:
            cache.add(self._version_key, 1, timeout=None)
            version = cache.get(self._version_key, 1)
        return version

    def _key(self, name: str) -> str:
        return f"module-cache:{self.code}:v{self._version()}:{name}"

    def get(self, name: str, default: Any = None) -> Any:
        return cache.get(self._key(name), default)

    def set(self, name: str, value: Any, timeout: float) -> None:
        cache.set(self._key(name), value, timeout)

    def get_or_set(self, name: str, compute: Any, timeout: float) -> Any:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            value = compute()
            self.set(name, value, timeout)
        return value

    def clear(self) -> int:
        """Make every entry unreachable; returns the new version."""
        self._version()
        try:
            return cache.incr(self._version_key)
        except ValueError:  # expired between the two calls
            cache.set(self._version_key, 2, timeout=None)
            return 2
