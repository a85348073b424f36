"""State changes of the compliance checklist: an item's status, owner and notes; evidence;
the automated checks' results. Each in one transaction with its audit event."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.compliance.checks import CHECKS, Outcome, check_run
from apps.compliance.errors import EvidenceTooLarge, invalid
from apps.compliance.evidence import clean_file_name, evidence_content_type, evidence_encrypt
from apps.compliance.models import (
    EVIDENCE_TEXT_MAX,
    EVIDENCE_URL_MAX,
    NOTES_MAX,
    ChecklistItem,
    CheckResult,
    CheckResultValue,
    Evidence,
    EvidenceKind,
    ItemStatus,
)
from apps.compliance.reports import report_data, report_formats
from apps.compliance.selectors import CHECKLIST, compliance_owner_candidates

logger = logging.getLogger("bulwark.compliance")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
_url_validator = URLValidator(schemes=["http", "https"])


def _owner_named(username: str) -> Any:
    owner = compliance_owner_candidates().filter(username=username).first()
    if owner is None:
        raise invalid("owner", f"no active user named {username!r} may own an item")
    return owner


def _pseudonym(user: Any) -> str | None:
    return None if user is None else pseudonym_for(user)


@transaction.atomic
def compliance_item_update(
    *,
    actor: Any,
    item: ChecklistItem,
    status: str,
    owner: str | None = UNSET,
    notes: str = UNSET,
) -> ChecklistItem:
    """Set the status (and, when given, the owner by username or None, and the notes); the
    item counts as reviewed now. Audited `compliance.item.updated` with what changed (people
    as pseudonyms, never the notes' text). InvalidInput for an unknown status, owner or
    over-long notes; nothing is saved then."""
    item = (
        ChecklistItem.objects.select_for_update(of=("self",))
        .select_related("owner")
        .get(pk=item.pk)
    )
    if status not in ItemStatus.values:
        raise invalid("status", f"must be one of {', '.join(ItemStatus.values)}")
    changes: dict[str, Any] = {}
    if status != item.status:
        changes["status"] = {"from": item.status, "to": status}
        item.status = status
    if owner is not UNSET:
        new_owner = None if owner in (None, "") else _owner_named(owner)
        if new_owner != item.owner:
            changes["owner"] = {"from": _pseudonym(item.owner), "to": _pseudonym(new_owner)}
            item.owner = new_owner
    if notes is not UNSET:
        notes = notes or ""
        if len(notes) > NOTES_MAX:
            raise invalid("notes", f"is {len(notes)} characters; at most {NOTES_MAX}")
        if notes != item.notes:
            changes["notes"] = "changed"
            item.notes = notes
    item.last_reviewed_at = timezone.now()
    item.full_clean()
    item.save(update_fields=["status", "owner", "notes", "last_reviewed_at", "updated_at"])
    audit_event_record(
        "compliance.item.updated",
        actor=actor,
        target=item,
        details={"changes": changes},
    )
    return item


def _check_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise invalid("url", "is empty")
    if len(url) > EVIDENCE_URL_MAX:
        raise invalid("url", f"is {len(url)} characters; at most {EVIDENCE_URL_MAX}")
    try:
        _url_validator(url)
    except ValidationError:
        raise invalid("url", "must be an http:// or https:// URL") from None
    if "@" in urlsplit(url).netloc:
        # user:password@host would store a credential in the evidence.
        raise invalid("url", "may not carry a user name or password")
    return url


def _check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise invalid("text", "is empty")
    if len(text) > EVIDENCE_TEXT_MAX:
        raise invalid("text", f"is {len(text)} characters; at most {EVIDENCE_TEXT_MAX}")
    if "\x00" in text:
        raise invalid("text", "may not contain the NUL character")
    return text


def _read_file(upload: IO[bytes]) -> bytes:
    limit = settings.COMPLIANCE_EVIDENCE_MAX_BYTES
    # Upload handlers already bound the size; read one byte more to be sure of any source.
    content = upload.read(limit + 1)
    if len(content) > limit:
        raise EvidenceTooLarge(f"The evidence file is larger than the limit of {limit} bytes.")
    return content


@transaction.atomic
def evidence_add(
    *,
    actor: Any,
    item: ChecklistItem,
    url: str | None = None,
    text: str | None = None,
    file: Any = None,
) -> Evidence:
    """Attach exactly one of a link (http/https), a text (bounded) or a file (allow-listed
    type, bounded, stored encrypted) to the item. Audited `compliance.evidence.added` with
    digests, never the content. InvalidInput (400), EvidenceTooLarge (413) or
    EvidenceTypeRefused (415) otherwise; nothing is saved then."""
    given = [name for name, value in (("url", url), ("text", text), ("file", file)) if value]
    if len(given) != 1:
        message = "give exactly one of url, text or file" + (
            f" (got {', '.join(given)})" if given else ""
        )
        raise invalid("" if not given else given[-1], message)
    evidence = Evidence(item=item, added_by=actor)
    details: dict[str, Any] = {}
    if url:
        evidence.kind = EvidenceKind.LINK
        evidence.url = _check_url(url)
        details = {
            "host": urlsplit(evidence.url).hostname,
            "url_sha256": hashlib.sha256(evidence.url.encode()).hexdigest(),
        }
    elif text:
        evidence.kind = EvidenceKind.TEXT
        evidence.text = _check_text(text)
        details = {
            "length": len(evidence.text),
            "sha256": hashlib.sha256(evidence.text.encode()).hexdigest(),
        }
    else:
        content = _read_file(file)
        evidence.kind = EvidenceKind.FILE
        evidence.file_name = clean_file_name(getattr(file, "name", "") or "")
        evidence.content_type = evidence_content_type(
            name=evidence.file_name,
            declared=getattr(file, "content_type", "") or "",
            content=content,
        )
        evidence.size = len(content)
        evidence.sha256, evidence.data_key_sealed, ciphertext = evidence_encrypt(
            content, evidence_id=str(evidence.id)
        )
        evidence.ciphertext = ciphertext
        details = {
            "content_type": evidence.content_type,
            "size": evidence.size,
            "sha256": evidence.sha256,
        }
    evidence.full_clean()
    evidence.save()
    audit_event_record(
        "compliance.evidence.added",
        actor=actor,
        target=item,
        details={"evidence": str(evidence.id), "kind": evidence.kind, **details},
    )
    return evidence


def compliance_checks_run(*, actor: Any, trigger: str = "request") -> list[CheckResult]:
    """Run every item's automated check now and record the results (one transaction, with a
    `compliance.checks.completed` event). A check that passed last time and fails now is also
    a `compliance.check.regressed` event. Returns the new results in checklist order."""
    items = list(ChecklistItem.objects.exclude(automated_check="").order_by("position"))
    # The checks read live state (and verify the audit chain, which chains pending events in
    # its own transactions): run them before taking any lock.
    outcomes: dict[str, Outcome] = {}
    for name in {item.automated_check for item in items}:
        if name in CHECKS:
            outcomes[name] = check_run(name)
    now = timezone.now()
    results = []
    with transaction.atomic():
        # Row locks serialise concurrent runs, so one regression is reported once.
        locked = list(
            ChecklistItem.objects.select_for_update()
            .filter(pk__in=[item.pk for item in items])
            .order_by("position")
        )
        for item in locked:
            previous = (
                CheckResult.objects.filter(item=item).order_by("-checked_at").only("result").first()
            )
            outcome = outcomes.get(item.automated_check)
            if outcome is None:
                value = CheckResultValue.MANUAL
                detail = (
                    f"No automated check named {item.automated_check!r} exists; review by hand."
                )
            else:
                value = CheckResultValue.PASS if outcome.passed else CheckResultValue.FAIL
                detail = outcome.detail
            result = CheckResult(
                item=item,
                check_name=item.automated_check,
                result=value,
                detail=detail[:1000],
                checked_at=now,
            )
            result.full_clean()
            results.append(result)
            if previous is not None and previous.result == "pass" and value == "fail":
                audit_event_record(
                    "compliance.check.regressed",
                    actor=actor,
                    target=item,
                    outcome="failure",
                    details={"check": item.automated_check, "detail": result.detail},
                )
        CheckResult.objects.bulk_create(results)
        audit_event_record(
            "compliance.checks.completed",
            actor=actor,
            details={
                "trigger": trigger,
                "pass": sum(result.result == "pass" for result in results),
                "fail": sum(result.result == "fail" for result in results),
            },
        )
    return results


@dataclass(frozen=True)
class GeneratedReport:
    file_name: str
    content_type: str
    content: bytes


def compliance_report_generate(
    *,
    actor: Any,
    framework: str = CHECKLIST,
    format: str = "pdf",
) -> GeneratedReport:
    """Build the report (verifying the whole audit chain on the way) and record
    `compliance.report.generated` with the report's SHA-256, so a copy can later be matched
    to this event. InvalidInput for an unknown framework or format."""
    formats = report_formats()
    if format not in formats:
        raise invalid("format", f"must be one of {', '.join(formats)}")
    data = report_data(actor=actor, framework=framework)
    chosen = formats[format]
    content = chosen.render(data)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    with transaction.atomic():
        audit_event_record(
            "compliance.report.generated",
            actor=actor,
            details={
                "framework": framework,
                "format": format,
                "items": data["report"]["items"],
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            },
        )
    return GeneratedReport(
        f"bulwark-compliance-{framework}-{stamp}.{chosen.extension}", chosen.content_type, content
    )
