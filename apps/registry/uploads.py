"""Upload handling for model artifacts: the whole file in memory, never in a temporary file.

Django's default handlers spill uploads over FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) to a named
temporary file, which would put the plaintext model on disk. This handler is the only one set
on the upload view, so the bytes go from the socket into one BytesIO and from there into
encryption; past BULWARK_MAX_ARTIFACT_BYTES it stops reading with 413.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from apps.core.errors import PayloadTooLarge


class ArtifactTooLarge(PayloadTooLarge):
    default_message = "The artifact is larger than the upload limit."


class InMemoryArtifactUploadHandler(FileUploadHandler):
    """Keeps every uploaded file whole in memory; the sum of all files in one request is
    bounded by `limit` (a second file field must not double the memory an upload may take)."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = settings.BULWARK_MAX_ARTIFACT_BYTES if limit is None else limit
        self.total = 0
        self.buffer = io.BytesIO()

    def _refuse(self) -> ArtifactTooLarge:
        return ArtifactTooLarge(f"The artifact is larger than the limit of {self.limit} bytes.")

    def handle_raw_input(  # type: ignore[override]  # the boundary is bytes (str in the stubs)
        self,
        input_data: Any,
        META: dict[str, Any],  # Django's parameter name
        content_length: int,
        boundary: bytes,
        encoding: str | None = None,
    ) -> None:
        # Refuse before reading anything when the body alone says it is too large (the body
        # also holds the other fields, so allow them the JSON limit on top).
        if content_length > self.limit + settings.BULWARK_MAX_JSON_BODY:
            raise self._refuse()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.total += len(raw_data)
        if self.total > self.limit:
            # Drop what was read so far at once rather than when the request ends.
            self.buffer = io.BytesIO()
            raise self._refuse()
        self.buffer.write(raw_data)

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        buffer, self.buffer = self.buffer, io.BytesIO()
        buffer.seek(0)
        return InMemoryUploadedFile(
            file=buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
