"""Every log line the suite makes, in this process or from a `python -m service` it ran,
searched for anything shaped like a secret: an API key (`fo_` and its 43 characters; the
10-character display prefix is allowed) or a JWT. tests/conftest.py fails the session if
one is found, naming the test and the logger, never the secret.

    watch.scan(text, where="python -m service of test_x")   # a process's captured log
"""

from __future__ import annotations

import logging
import re

SECRET_SHAPES = re.compile(
    r"fo_[A-Za-z0-9_-]{20,}"  # an API key (a display prefix is fo_ and 7 characters)
    r"|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"  # a JWT: header.payload.signature
)


class LogWatch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.found: list[str] = []  # where each secret-shaped string was seen
        self.lines = 0
        self.current_test = "(no test)"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted is no secret of ours
            return
        self.scan(text, where=f"{self.current_test}, logger {record.name}")

    def scan(self, text: str, *, where: str) -> None:
        for line in text.splitlines():
            self.lines += 1
            if SECRET_SHAPES.search(line):
                self.found.append(where)


watch = LogWatch()
