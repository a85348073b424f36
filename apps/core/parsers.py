from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from apps.core.errors import PayloadTooLarge
from apps.core.strict_json import loads_strict


class StrictJSONParser(BaseParser):
    """DRF's JSON parser, but strict (see apps.core.strict_json) and bounded in size."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        if stream is None:
            return {}
        limit = settings.BULWARK_MAX_JSON_BODY
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        if not raw.strip():
            return {}
        return loads_strict(raw)
