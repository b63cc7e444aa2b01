r"""Find the line of an ensemble file where a field is written, so errors can point at it.

text = '[[agents]]\nname = "a"\n\n[[agents]]\ntimeout_s = 5\n'
line_of(text, ("agents", 1, "timeout_s"))  # 5
line_of(text, ("agents", 1, "name"))  # 4: not written, so the line of its [[agents]] header
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence

_Loc = tuple[str | int, ...]

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    """Where each path starts; arrays and inline tables are entered, other values skipped."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.starts: dict[_Loc, int] = {}
        # How many [[array]] headers each concrete array path has seen: a later `[a.b]` or
        # `[[a.b]]` refers to the newest element of `a`, as TOML defines it.
        self.array_lengths: dict[_Loc, int] = {}

    def scan(self) -> dict[_Loc, int]:
        table: _Loc = ()
        while self._skip_blank(newlines=True) < len(self.text):
            start = self.pos
            if self.text.startswith("[[", start):
                self.pos += 2
                *parents, name = self._key()
                self._expect("]]")
                array = (*self._resolve(parents), name)
                index = self.array_lengths.get(array, 0)
                self.array_lengths[array] = index + 1
                self.starts.setdefault(array, start)  # the whole array: its first header
                table = (*array, index)
            elif self.text.startswith("[", start):
                self.pos += 1
                table = self._resolve(self._key())
                self._expect("]")
            else:
                self._key_value(table)
                continue
            self.starts[table] = start
        return self.starts

    def _resolve(self, keys: list[str]) -> _Loc:
        path: _Loc = ()
        for key in keys:
            path = (*path, key)
            if path in self.array_lengths:
                path = (*path, self.array_lengths[path] - 1)
        return path

    def _key_value(self, table: _Loc) -> None:
        start = self.pos
        path = (*table, *self._key())
        self._expect("=")
        self.starts[path] = start
        self._value(path)

    def _key(self) -> list[str]:
        keys: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            start = self.pos
            if self.text[start] in "\"'":
                self._string()
                # tomllib decodes the quoted key, escapes included.
                keys.append(str(tomllib.loads(f"k = {self.text[start : self.pos]}")["k"]))
            else:
                while self.text[self.pos] in _BARE_KEY:
                    self.pos += 1
                if self.pos == start:  # no progress would mean looping forever
                    raise ValueError("expected a key")
                keys.append(self.text[start : self.pos])
            if self._skip_blank(newlines=False) >= len(self.text) or self.text[self.pos] != ".":
                return keys
            self.pos += 1

    def _value(self, path: _Loc) -> None:
        self._skip_blank(newlines=False)
        char = self.text[self.pos]
        if char in "\"'":
            self._string()
        elif char in "[{":
            self.pos += 1
            index = 0
            while self._skip_blank(newlines=True) < len(self.text):
                if self.text[self.pos] in "]}":
                    self.pos += 1
                    return
                if char == "[":
                    self.starts[(*path, index)] = self.pos
                    self._value((*path, index))
                    index += 1
                else:
                    self._key_value(path)
                if self._skip_blank(newlines=True) < len(self.text) and self.text[self.pos] == ",":
                    self.pos += 1
            raise ValueError("unclosed array or inline table")
        else:  # numbers, booleans, dates: they may hold a space ("1979-05-27 07:32:00")
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}#\n":
                self.pos += 1

    def _string(self) -> None:
        quote = self.text[self.pos]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        self.pos += len(delimiter)
        while not self.text.startswith(delimiter, self.pos):
            if self.pos >= len(self.text):
                raise ValueError("unclosed string")
            # Only basic strings have escapes; `\"` must not end them.
            self.pos += 2 if quote == '"' and self.text[self.pos] == "\\" else 1
        self.pos += len(delimiter)
        # A multi-line string may end in quotes of its own: `"""a""""`; valid TOML puts no
        # quote right after any other string, so eating the whole run is safe.
        while len(delimiter) == 3 and self.text.startswith(quote, self.pos):
            self.pos += 1

    def _skip_blank(self, *, newlines: bool) -> int:
        blank = " \t\r\n" if newlines else " \t"
        while self.pos < len(self.text):
            if self.text[self.pos] in blank:
                self.pos += 1
            elif newlines and self.text[self.pos] == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end == -1 else end
            else:
                break
        return self.pos

    def _expect(self, token: str) -> None:
        self._skip_blank(newlines=False)
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"expected {token!r}")
        self.pos += len(token)


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line where the value at `loc` is written in the TOML `text`, or None.

    A key that is not written falls back to the nearest enclosing path that is: its table
    header, the key of an inline table or array, or the first `[[header]]` of an array.
    """
    try:
        tomllib.loads(text)  # the scan below trusts the text to be valid TOML
        starts = _Scanner(text).scan()
        path = tuple(loc)
        for end in range(len(path), 0, -1):
            if path[:end] in starts:
                return text.count("\n", 0, starts[path[:end]]) + 1
        return None
    except Exception:  # best effort: a wrong guess must never hide the real error
        return None
