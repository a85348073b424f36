"""Seed the security checklist for ML deployments, the incident-response plan's six phases,
the GDPR, HIPAA and SOC 2 controls, and which controls each item supports.

The data is frozen here, as a data migration should be: a later change to the checklist is a
later migration. `seed` is idempotent (it adds what is missing and never touches an item's
status, owner, notes or evidence), so tests that empty the tables can call it again.
"""

from django.db import migrations

FRAMEWORKS = [
    (
        "gdpr",
        "GDPR",
        "EU General Data Protection Regulation (Regulation (EU) 2016/679): data subject rights, "
        "protection by design, security of processing, breach notification.",
    ),
    (
        "hipaa",
        "HIPAA",
        "HIPAA Security Rule (45 CFR Part 164): the technical safeguards of 164.312 and the "
        "administrative safeguards of 164.308 that concern risk and incidents.",
    ),
    (
        "soc2",
        "SOC 2",
        "AICPA Trust Services Criteria: security (common criteria CC1-CC9), availability, "
        "processing integrity, confidentiality and privacy.",
    ),
]

# (framework, code, title, group, description)
CONTROLS = [
    ("gdpr", "Art. 15", "Right of access by the data subject", "",
     "A person can obtain a copy of the personal data held about them."),
    ("gdpr", "Art. 17", "Right to erasure", "",
     "Personal data is erased without undue delay when a person asks and no ground to keep it "
     "remains."),
    ("gdpr", "Art. 20", "Right to data portability", "",
     "A person receives their data in a structured, commonly used, machine-readable format."),
    ("gdpr", "Art. 25", "Data protection by design and by default", "",
     "Pseudonymisation, data minimisation and privacy-preserving defaults are built in."),
    ("gdpr", "Art. 32", "Security of processing", "",
     "Encryption, confidentiality, integrity, availability and regular testing of security "
     "measures."),
    ("gdpr", "Art. 33-34", "Personal data breach notification", "",
     "A breach is notified to the supervisory authority within 72 hours and to the people "
     "affected when the risk is high; every breach is documented."),
    ("hipaa", "164.312(a)(1)", "Access control", "",
     "Only authorised persons and software can access electronic protected health "
     "information."),
    ("hipaa", "164.312(a)(2)(iv)", "Encryption and decryption", "",
     "A mechanism to encrypt and decrypt electronic protected health information."),
    ("hipaa", "164.312(b)", "Audit controls", "",
     "Mechanisms that record and examine activity in systems holding health information."),
    ("hipaa", "164.312(c)(1)", "Integrity", "",
     "Health information is protected from improper alteration or destruction."),
    ("hipaa", "164.312(d)", "Person or entity authentication", "",
     "Whoever seeks access is verified to be who they claim to be."),
    ("hipaa", "164.312(e)(1)", "Transmission security", "",
     "Health information sent over a network is protected against unauthorised access."),
    ("hipaa", "164.308(a)(1)", "Security management process", "",
     "Risk analysis and risk management that keep risks to a reasonable level."),
    ("hipaa", "164.308(a)(6)", "Security incident procedures", "",
     "Security incidents are identified, responded to, mitigated and documented."),
    ("soc2", "CC1", "Control environment", "Security",
     "Integrity, oversight, structure, authority and responsibility for internal control."),
    ("soc2", "CC2", "Communication and information", "Security",
     "Information needed for internal control is obtained, used and communicated."),
    ("soc2", "CC3", "Risk assessment", "Security",
     "Risks to the objectives, fraud and significant changes are identified and assessed."),
    ("soc2", "CC4", "Monitoring activities", "Security",
     "Controls are evaluated and deficiencies communicated and corrected."),
    ("soc2", "CC5", "Control activities", "Security",
     "Control activities, technology controls and policies mitigate the risks."),
    ("soc2", "CC6", "Logical and physical access controls", "Security",
     "Access to systems and data is restricted, authenticated, and protected in transit and "
     "at rest."),
    ("soc2", "CC7", "System operations", "Security",
     "Vulnerabilities and anomalies are detected and security incidents responded to."),
    ("soc2", "CC8", "Change management", "Security",
     "Changes to systems are authorised, tested, approved and recorded."),
    ("soc2", "CC9", "Risk mitigation", "Security",
     "Business disruption and vendor risks are mitigated."),
    ("soc2", "A1", "Availability", "Availability",
     "Capacity, backups and recovery meet the availability commitments."),
    ("soc2", "PI1", "Processing integrity", "Processing integrity",
     "Processing is complete, valid, accurate, timely and authorised."),
    ("soc2", "C1", "Confidentiality", "Confidentiality",
     "Confidential information is identified, protected and disposed of."),
    ("soc2", "P1", "Privacy", "Privacy",
     "Personal information is collected, used, retained, disclosed and disposed of as "
     "committed (criteria P1-P8)."),
]

# (key, category, title, description, automated check, controls as "framework:code")
ITEMS = [
    # --- Authentication & authorization -----------------------------------------------------
    ("auth-api-keys", "authentication", "API key or OAuth2 authentication",
     "Every call to a model is authenticated with an API key (hashed at rest, scoped, "
     "expiring) or an OAuth2 bearer token (JWT); anonymous calls are refused, and keys nobody "
     "uses are retired.",
     "api_keys_unused",
     ["hipaa:164.312(d)", "soc2:CC6", "gdpr:Art. 32"]),
    ("auth-rbac", "authentication", "Role-based access control (RBAC)",
     "Five roles (admin, security officer, ML engineer, auditor, API client) and per-model "
     "predict grants decide who may do what, on the principle of least privilege.",
     "",
     ["hipaa:164.312(a)(1)", "soc2:CC1", "soc2:CC5", "soc2:CC6", "gdpr:Art. 25",
      "gdpr:Art. 32"]),
    ("auth-token-expiry", "authentication", "Token expiration and refresh",
     "Access tokens live at most 15 minutes and refresh tokens at most one day; a refresh "
     "rotates the token and reusing a rotated one revokes its whole family.",
     "jwt_lifetimes",
     ["hipaa:164.312(d)", "soc2:CC6"]),
    ("auth-mfa", "authentication", "Multi-factor authentication (MFA)",
     "Members of the privileged roles (admin, security officer) sign in with a confirmed TOTP "
     "device.",
     "mfa_privileged",
     ["hipaa:164.312(d)", "soc2:CC6", "gdpr:Art. 32"]),
    # --- Input security ---------------------------------------------------------------------
    ("input-schema-validation", "input", "Input schema validation",
     "Each prediction row is validated against its version's JSON Schema; unexpected fields, "
     "NaN and Infinity, and over-deep JSON are refused with 400.",
     "",
     ["hipaa:164.312(c)(1)", "soc2:CC5", "soc2:PI1"]),
    ("input-sql-injection", "input", "SQL injection prevention",
     "All database access goes through the ORM or parameterised queries; no SQL is built from "
     "request data.",
     "",
     ["hipaa:164.312(c)(1)", "soc2:CC6", "gdpr:Art. 32"]),
    ("input-xss", "input", "Cross-site scripting (XSS) prevention",
     "Templates escape every value; a strict Content-Security-Policy forbids inline and "
     "third-party scripts; the API answers JSON only.",
     "",
     ["soc2:CC6", "gdpr:Art. 32"]),
    ("input-rate-limiting", "input", "Rate limiting",
     "Predict is rate limited per API key and per JWT user (PREDICT_USER_RATE_LIMIT); failed "
     "authentication is limited per client address.",
     "predict_rate_limit",
     ["soc2:A1", "soc2:CC6"]),
    ("input-size-limits", "input", "Request size limits",
     "JSON bodies are at most 1 MiB, batches at most max_batch rows, uploads bounded; a larger "
     "request gets 413 before it is read.",
     "",
     ["soc2:A1", "soc2:PI1"]),
    # --- Model security ---------------------------------------------------------------------
    ("model-encryption-at-rest", "model", "Model encryption at rest",
     "Every artifact is encrypted with its own data key, wrapped by the current master key; "
     "no artifact is stored in the clear.",
     "model_versions_encrypted",
     ["hipaa:164.312(a)(2)(iv)", "soc2:C1", "soc2:CC6", "gdpr:Art. 32"]),
    ("model-watermarking", "model", "Model watermarking",
     "Production versions carry a watermark set that is verified regularly, to prove "
     "ownership of a model and to detect a stolen copy.",
     "watermark_recent",
     ["soc2:C1", "soc2:CC9", "soc2:PI1"]),
    ("model-versioning", "model", "Model versioning and access control",
     "Versions are numbered, immutable and staged (staging, production, archived); only ML "
     "engineers and admins upload or promote them, and every change is audited.",
     "",
     ["hipaa:164.312(c)(1)", "soc2:CC6", "soc2:CC8", "soc2:PI1"]),
    ("model-adversarial", "model", "Adversarial robustness tested",
     "Each model is tested against adversarial inputs (evasion, extraction, membership "
     "inference) before it goes to production; the results are kept as evidence.",
     "",
     ["hipaa:164.308(a)(1)", "soc2:CC3", "soc2:CC9"]),
    # --- Data privacy -----------------------------------------------------------------------
    ("privacy-pii", "privacy", "PII removal and anonymisation",
     "Personal data is scrubbed from logs and audit events; people appear only as "
     "pseudonyms, client addresses truncated; erasing a person deletes the pseudonym link.",
     "",
     ["gdpr:Art. 17", "gdpr:Art. 25", "gdpr:Art. 32", "soc2:P1"]),
    ("privacy-differential", "privacy", "Differential privacy",
     "Models trained on personal data add Laplace noise to their outputs, within a daily "
     "epsilon budget per caller.",
     "",
     ["gdpr:Art. 25", "soc2:P1"]),
    ("privacy-encryption", "privacy", "Encryption in transit and at rest",
     "TLS on every connection; artifacts, signing secrets, TOTP seeds and evidence files are "
     "encrypted at rest.",
     "",
     ["hipaa:164.312(a)(2)(iv)", "hipaa:164.312(e)(1)", "soc2:C1", "soc2:CC6",
      "gdpr:Art. 32"]),
    ("privacy-review", "privacy", "GDPR / HIPAA compliance review",
     "A documented review of the personal and health data processed: lawful basis, "
     "retention, subject rights (access, portability, erasure) and breach notification.",
     "",
     ["gdpr:Art. 15", "gdpr:Art. 17", "gdpr:Art. 20", "gdpr:Art. 33-34",
      "hipaa:164.308(a)(1)", "soc2:CC1", "soc2:CC3", "soc2:P1"]),
    # --- Infrastructure ---------------------------------------------------------------------
    ("infra-https", "infrastructure", "HTTPS / TLS",
     "In production every request is redirected to HTTPS, HSTS is sent for a year (preload) "
     "and cookies are secure; TLS ends at gunicorn or the proxy.",
     "https_production",
     ["hipaa:164.312(e)(1)", "soc2:C1", "soc2:CC6", "gdpr:Art. 32"]),
    ("infra-firewall", "infrastructure", "Firewall rules",
     "Only the web port is reachable from outside; PostgreSQL and Redis accept connections "
     "from the application network alone.",
     "",
     ["hipaa:164.312(a)(1)", "soc2:CC6"]),
    ("infra-segmentation", "infrastructure", "Network segmentation",
     "Web, workers, database and Redis sit in separate network segments; outbound calls go "
     "only to allow-listed hosts.",
     "",
     ["hipaa:164.312(e)(1)", "soc2:CC6"]),
    ("infra-updates", "infrastructure", "Security updates",
     "Base images and locked dependencies are updated and rebuilt at least monthly and on "
     "every critical advisory.",
     "",
     ["hipaa:164.308(a)(1)", "soc2:CC3", "soc2:CC7", "soc2:CC8"]),
    # --- Monitoring & auditing --------------------------------------------------------------
    ("monitoring-logging", "monitoring", "Security logging",
     "Every request has a JSON access-log line (secrets masked) and every security decision "
     "an audit event.",
     "audit_recent_events",
     ["hipaa:164.312(b)", "soc2:CC4", "soc2:CC7", "gdpr:Art. 32"]),
    ("monitoring-audit-trail", "monitoring", "Audit trails",
     "The audit trail is append-only and hash-chained, signed at checkpoints and verified on "
     "a schedule.",
     "audit_chain",
     ["hipaa:164.312(b)", "hipaa:164.312(c)(1)", "soc2:CC4", "soc2:CC7", "gdpr:Art. 33-34"]),
    ("monitoring-anomaly", "monitoring", "Anomaly detection",
     "Detectors watch for bursts of failed authentication, rate-limit floods, signature "
     "replays and watermark failures, and open incidents by themselves.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:CC7", "gdpr:Art. 33-34"]),
    ("monitoring-ir-plan", "monitoring", "Incident response plan",
     "A written plan with an owner for each of its six phases (detection, containment, "
     "investigation, remediation, recovery, post-mortem), exercised at least once a year.",
     "incident_plan_owners",
     ["hipaa:164.308(a)(6)", "soc2:CC1", "soc2:CC2", "soc2:CC7", "gdpr:Art. 33-34"]),
    # --- Secrets management -----------------------------------------------------------------
    ("secrets-not-in-code", "secrets", "No secrets in code",
     "No secret is in the repository or an image; none is a default, placeholder or short "
     "value.",
     "secrets_strength",
     ["soc2:C1", "soc2:CC6", "gdpr:Art. 32"]),
    ("secrets-vault", "secrets", "Environment or key vault",
     "Secrets come from the environment in development and from a key vault (Azure Key "
     "Vault) in production.",
     "secrets_vault",
     ["hipaa:164.312(a)(1)", "soc2:CC6"]),
    ("secrets-rotation", "secrets", "Rotation policy",
     "Master keys rotate with re-wrapping; every API key expires (at most 365 days) and "
     "rotates with a grace period; signing keys rotate yearly.",
     "api_keys_expiry",
     ["soc2:CC5", "soc2:CC6"]),
    ("secrets-access-logged", "secrets", "Access to secrets logged",
     "Reads of vault secrets are logged by the vault (diagnostic settings on); issuing, "
     "rotating and revoking keys are audit events.",
     "",
     ["hipaa:164.312(b)", "soc2:CC6", "soc2:CC7"]),
    # --- Incident response plan: the six phases ----------------------------------------------
    ("ir-detection", "incident_response", "Detection",
     "Detectors and people open incidents, each with a severity (SEV1-SEV4) and an assignee.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:CC7", "gdpr:Art. 33-34"]),
    ("ir-containment", "incident_response", "Containment",
     "One-click containment (revoke an API key, archive a model version, deactivate a user); "
     "time to contain is measured.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:CC7"]),
    ("ir-investigation", "incident_response", "Investigation",
     "The audit trail and linked resources establish what happened, when and to whom; "
     "findings go on the incident's timeline.",
     "",
     ["hipaa:164.308(a)(6)", "hipaa:164.312(b)", "soc2:CC7", "gdpr:Art. 33-34"]),
    ("ir-remediation", "incident_response", "Remediation",
     "The cause is fixed (patch, configuration, rotated keys) and the fix verified before "
     "recovery.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:CC7", "soc2:CC8"]),
    ("ir-recovery", "incident_response", "Recovery",
     "Service is restored from known-good versions and keys, and monitoring confirms normal "
     "behaviour.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:A1", "soc2:CC7", "soc2:CC9"]),
    ("ir-postmortem", "incident_response", "Post-mortem",
     "Every closed incident has a root cause, impact, lessons and owned action items with due "
     "dates; breaches are documented for notification.",
     "",
     ["hipaa:164.308(a)(6)", "soc2:CC2", "soc2:CC4", "soc2:CC7", "gdpr:Art. 33-34"]),
]


def seed(apps):
    """Create whatever of the catalogue is missing; never change an existing item's state."""
    Framework = apps.get_model("compliance", "Framework")
    Control = apps.get_model("compliance", "Control")
    ChecklistItem = apps.get_model("compliance", "ChecklistItem")
    frameworks = {}
    for position, (key, name, description) in enumerate(FRAMEWORKS, start=1):
        frameworks[key], _ = Framework.objects.get_or_create(
            key=key, defaults={"name": name, "description": description, "position": position}
        )
    controls = {}
    for position, (framework, code, title, group, description) in enumerate(CONTROLS, start=1):
        controls[f"{framework}:{code}"], _ = Control.objects.get_or_create(
            framework=frameworks[framework],
            code=code,
            defaults={
                "title": title,
                "group": group,
                "description": description,
                "position": position,
            },
        )
    for position, (key, category, title, description, check, refs) in enumerate(
        ITEMS, start=1
    ):
        item, _ = ChecklistItem.objects.get_or_create(
            key=key,
            defaults={
                "position": position,
                "category": category,
                "title": title,
                "description": description,
                "automated_check": check,
            },
        )
        item.controls.add(*(controls[ref] for ref in refs))


def forwards(apps, schema_editor):
    seed(apps)


def backwards(apps, schema_editor):
    apps.get_model("compliance", "ChecklistItem").objects.filter(
        key__in=[item[0] for item in ITEMS], evidence__isnull=True
    ).delete()
    Control = apps.get_model("compliance", "Control")
    Control.objects.filter(items__isnull=True).delete()
    apps.get_model("compliance", "Framework").objects.filter(controls__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
