"""Indexes for the console's audit filters (issue 16) that no column served: an event's
target id and request id, which live only in its hashed body, and the outcomes other than
success (rare, so a scan in time order would read most of the chain to find a page of them).

The body expressions are apps.audit.selectors.TARGET_ID_SQL and REQUEST_ID_SQL, copied here as
a migration must not change with the code (PostgreSQL uses an expression index only for the
same expression: tests/console/test_audit_pages.py checks both copies match and are used).
They use string functions, not a JSON cast: a cast refuses some texts (a `\\u0000` escape),
and a refusal here would stop the chainer's INSERT for good. Each index ends with `ts`, the
list's order.

PostgreSQL builds them CONCURRENTLY (outside a transaction), so a big chain keeps being
appended to while they build; SQLite (the embedded default, small) gets none. A concurrent
build that was interrupted (a failure, a cancelled deploy) leaves its index behind, INVALID:
never used, yet still kept up to date on every insert, and `IF NOT EXISTS` would skip it on the
next run. So each run first drops an index of that name that is not valid, then builds it.
"""

from django.db import migrations

TARGET_ID_SQL = (
    """CASE WHEN strpos(body, ',"target":{"id":"') > 0 THEN left(split_part(split_part("""
    """body, ',"target":{"id":"', -1), '","type":', 1), 200) END"""
)
REQUEST_ID_SQL = (
    """CASE WHEN strpos(body, ',"request_id":"') > 0 THEN left(split_part(split_part("""
    """body, ',"request_id":"', -1), '","seq":', 1), 200) END"""
)

INDEXES = {
    "audit_auditevent_target_ts": f"(({TARGET_ID_SQL}), ts)",
    "audit_auditevent_request_ts": f"(({REQUEST_ID_SQL}), ts)",
    "audit_auditevent_outcome_ts": "(outcome, ts) WHERE outcome <> 'success'",
}


def _invalid(schema_editor, name):
    """True when an index of that name exists, left INVALID by an interrupted build."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name]
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        if _invalid(schema_editor, name):
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", params=None)
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON audit_auditevent {definition}",
            params=None,
        )
    # An expression index has no statistics until the next ANALYZE (an append-only table is
    # analysed again only after many new rows): without them the planner guesses, and may
    # scan. ANALYZE samples a bounded number of rows, however big the table.
    schema_editor.execute("ANALYZE audit_auditevent", params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", params=None)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [("audit", "0003_hmac_key_ids")]

    operations = [migrations.RunPython(forward, backward)]
