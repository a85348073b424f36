"""The sign-in API's input shapes (docs/api.md "JWT")."""

from __future__ import annotations

from rest_framework import serializers


class RefreshInput(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)
