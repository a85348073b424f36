"""The compliance API's serializers: checklist items with their controls, evidence and check
results (docs/api.md "Compliance")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    extend_schema_field,
)
from rest_framework import serializers

from apps.compliance.models import Category, EvidenceKind, ItemStatus
from apps.compliance.reports import check_data


class ControlSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ComplianceControl"

    framework = serializers.CharField(source="framework.key")
    code = serializers.CharField()
    title = serializers.CharField()


class EvidenceSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ComplianceEvidence"

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=EvidenceKind.choices)
    url = serializers.CharField(help_text='Links; "" otherwise.')
    text = serializers.CharField(help_text='Texts; "" otherwise.')
    file_name = serializers.CharField(help_text='Files; "" otherwise.')
    content_type = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(help_text="SHA-256 of a file's plaintext.")
    added_by = serializers.CharField(source="added_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class CheckSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ComplianceCheck"

    name = serializers.CharField(help_text='The automated check; "" when people review it.')
    result = serializers.ChoiceField(choices=["pass", "fail", "manual"])
    detail = serializers.CharField()
    checked_at = serializers.DateTimeField(allow_null=True)


class ItemSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ComplianceItem"

    id = serializers.UUIDField()
    key = serializers.CharField()
    category = serializers.ChoiceField(choices=Category.choices)
    title = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=ItemStatus.choices)
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    notes = serializers.CharField()
    last_reviewed_at = serializers.DateTimeField(allow_null=True)
    controls = ControlSerializer(many=True)
    evidence = EvidenceSerializer(many=True)
    check = serializers.SerializerMethodField()

    @extend_schema_field(CheckSerializer)
    def get_check(self, item: Any) -> dict[str, Any]:
        return check_data(item)
