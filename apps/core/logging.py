"""JSON log lines, masked before they are written.

`MaskSecretsFilter` is attached to the handler (not a logger: filters on loggers do not
see records propagated from child loggers), so every record from every library passes it.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any

from apps.core.masking import mask_field, mask_text
from apps.core.request_context import current_request_id

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


def _describe_request(request: Any) -> dict[str, str]:
    # Django's loggers attach the HttpRequest; its repr has the query string (tokens), so not that.
    return {"method": getattr(request, "method", ""), "path": getattr(request, "path", "")}


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name in _STANDARD:
                continue
            if name == "request":
                # Django attaches the HttpRequest (django.server: a socket); keep method and path.
                if not hasattr(value, "META"):
                    delattr(record, name)
                    continue
                value = _describe_request(value)
            setattr(record, name, mask_field(name, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info))
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or current_request_id.get()
        if request_id:
            line["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _STANDARD:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)
