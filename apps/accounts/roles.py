"""The five roles of docs/api.md. A user may hold several."""

from __future__ import annotations

from django.db import models


class RoleName(models.TextChoices):
    ADMIN = "admin", "Admin"
    SECURITY_OFFICER = "security_officer", "Security officer"
    ML_ENGINEER = "ml_engineer", "ML engineer"
    AUDITOR = "auditor", "Auditor"
    API_CLIENT = "api_client", "API client"
