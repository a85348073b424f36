"""What a browser without JavaScript sends when a person submits an admin page's form: the
page is fetched, its form read (inputs, checked boxes, selected options, text areas), some
fields typed over, and the whole posted back."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_form = False
        self.fields: list[tuple[str, str]] = []
        self._select: tuple[str, bool] | None = None
        self._select_seen: list[str] = []  # the first option, for a select with none selected
        self._select_chosen = False
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            # The page's own form, not the sign-out button every admin page carries.
            self.in_form = attributes.get("method", "").lower() == "post" and not attributes.get(
                "action", ""
            ).endswith("/logout/")
        if not self.in_form:
            return
        name = attributes.get("name")
        if tag == "input" and name:
            kind = attributes.get("type", "text").lower()
            if kind in {"submit", "button", "image", "reset", "file"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in attributes:
                return
            self.fields.append((name, attributes.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and name:
            self._select = (name, "multiple" in attributes)
            self._select_seen, self._select_chosen = [], False
        elif tag == "option" and self._select is not None:
            value = attributes.get("value", "")
            self._select_seen.append(value)
            if "selected" in attributes:
                self.fields.append((self._select[0], value))
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "select" and self._select is not None:
            name, multiple = self._select
            if not multiple and not self._select_chosen and self._select_seen:
                self.fields.append((name, self._select_seen[0]))  # as a browser does
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)


def form_fields(html: str) -> dict[str, Any]:
    """The fields the page's POST form would submit; a name given several times (a multiple
    select) maps to the list of its values."""
    reader = _FormReader()
    reader.feed(html)
    fields: dict[str, Any] = {}
    for name, value in reader.fields:
        if name in fields:
            existing = fields[name]
            fields[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            fields[name] = value
    return fields


def submit(client: Any, url: str, typed: dict[str, Any] | None = None, **extra: Any) -> Any:
    """GET `url`, then POST its form back with `typed` over what the page showed (a value of
    None removes the field, as unticking a box does)."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    data = form_fields(page.content.decode())
    for name, value in (typed or {}).items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    data.setdefault("_save", "Save")
    return client.post(url, data, **extra)
