"""JSON responses written by orjson: the JSON values DRF's JSONRenderer writes with our
settings (compact, UTF-8 unescaped), several times faster. Floats are written in their
shortest form either way (orjson writes 1e-08 as 1e-8), and U+2028/U+2029 stay unescaped (a
JSON response is not a script). Used where a response's cost matters (predict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

# Datetimes and dataclasses go to DRF's encoder, which writes them its own way (UTC as "Z").
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_drf = JSONEncoder()


class FastJSONRenderer(JSONRenderer):
    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)  # `; indent=`
        try:
            # orjson writes NaN as null where DRF's strict encoder refuses it: predict refuses
            # non-finite outputs before a body is made (apps.serving.features.plain_outputs).
            return orjson.dumps(data, default=_drf.default, option=_OPTIONS)
        except TypeError:  # a key that is not a string, a value neither knows: DRF's answer
            return super().render(data, accepted_media_type, renderer_context)
