"""Last line of defence against leaking secrets into logs.

Every AccessKeySecret and SecurityToken the process handles is registered here; the logging
filter replaces any registered value with ``***`` in every record, whatever logged it.
Code must still never log secrets on purpose: this only catches mistakes.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

_MAX = 4096
_MIN_LENGTH = 6  # shorter values would redact ordinary words
_lock = threading.Lock()
_secrets: OrderedDict[str, None] = OrderedDict()
MASK = "***"


def register(*values: str | None) -> None:
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_LENGTH:
                _secrets[value] = None
                _secrets.move_to_end(value)
        while len(_secrets) > _MAX:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    with _lock:
        values = list(_secrets)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so handlers do not format the raw exception later.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
