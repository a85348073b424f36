"""Each event records the id of the HMAC key that chained it (apps/audit/keys.py).

Existing events are not rewritten. They were chained before key ids existed; giving them one
would mean UPDATE on the append-only table (disabling its trigger, as the table owner, under a
lock for the whole rewrite), and the id written would still not be covered by their hashes.
Instead the column is added with "" for them (PostgreSQL 11+ adds a column with a constant
default without touching the rows, so the trigger never fires), and verification finds their
key by trying each configured key on the first of them, then holds the rest to it. Nothing
needs configuring: the key that chained them is AUDIT_HMAC_KEY until the first rotation, and in
AUDIT_HMAC_KEYS_RETIRED after it.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="hmac_key_id",
            field=models.CharField(default="", max_length=16),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["hmac_key_id", "seq"], name="audit_auditevent_key_seq"),
        ),
    ]
