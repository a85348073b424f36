"""The naive baseline's audit log: the table a tutorial adds, one ORM insert per request."""

from django.conf import settings
from django.db import models


class NaiveAuditLog(models.Model):
    ts = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    model = models.CharField(max_length=64)
    rows = models.IntegerField()
    ip = models.GenericIPAddressField(null=True)

    def __str__(self) -> str:
        return f"{self.action} {self.model} ({self.rows} rows)"
