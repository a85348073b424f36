"""A whole API key pasted into a search or filter box (`bwk_<public id>_<secret>` where its
prefix would do) must not be echoed in the page nor kept in the URL (history, proxy logs):
the pages that take such a box redirect to the same query with the key cut to its prefix.

The key's shape is apps.apikeys.keys's (`KEY_PREFIX`, `PUBLIC_ID_LENGTH`); it is written
here too because the pages below the apikeys app (the audit admin) may not import it
(tests/apikeys/test_no_secret_leaks.py checks that the two agree)."""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponseRedirect, QueryDict

KEY_PREFIX = "bwk_"
PUBLIC_ID_LENGTH = 12
# A key's prefix (`bwk_` and its public id: what names a key without its secret) followed by
# the `_` that starts the secret: whatever comes after is (part of) a secret.
_WHOLE_KEY = re.compile(rf"{KEY_PREFIX}[a-z0-9]{{{PUBLIC_ID_LENGTH}}}_")


def key_cut(value: str) -> str | None:
    """`value` cut just after the prefix of a whole key it holds (anything written before the
    key is kept: `apikey:bwk_…`), or None when it holds no more than a prefix."""
    found = _WHOLE_KEY.search(value)
    return value[: found.end() - 1] if found else None


def query_key_cut(query: QueryDict) -> QueryDict | None:
    """A copy of `query` with every value holding a whole key cut to the key's prefix, or
    None when no value holds one."""
    cut, changed = query.copy(), False
    for name, values in query.lists():
        kept = [key_cut(value) or value for value in values]
        if kept != values:
            cut.setlist(name, kept)
            changed = True
    return cut if changed else None


def pasted_key_redirect(request: HttpRequest) -> HttpResponseRedirect | None:
    """For a GET whose query holds a whole key: a redirect to the same address and query
    with the key cut to its prefix (the page then filters by the prefix); else None."""
    cut = query_key_cut(request.GET)
    if cut is None:
        return None
    return HttpResponseRedirect(f"{request.path}?{cut.urlencode()}")
