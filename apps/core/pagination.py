from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor
from rest_framework.pagination import CursorPagination as DrfCursorPagination
from rest_framework.response import Response

from apps.core.errors import InvalidInput


class CursorPagination(DrfCursorPagination):
    """docs/api.md's list shape `{"results": [...], "next": cursor | null}`: the cursor alone,
    not a URL, so clients pass it back as `?cursor=`. Stable under inserts, unlike offsets."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_next_cursor(self) -> str | None:
        link = self.get_next_link()
        if link is None:
            return None
        return parse_qs(urlsplit(link).query).get(self.cursor_query_param, [None])[0]

    def decode_cursor(self, request: Any) -> Cursor | None:
        # DRF answers a bad cursor with 404; it is the client's input that is wrong: 400.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise InvalidInput(
                "The cursor is not valid; use the `next` value of a list response.",
                details=[{"path": "cursor", "message": "not a valid cursor"}],
            ) from None

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({"results": data, "next": self.get_next_cursor()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as ?cursor= to get the next page; null on the last page.",
                },
            },
        }
