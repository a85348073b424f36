"""The PII scrubber: personal data is masked by name and by shape in every channel (logs,
audit details), and what our own records are made of (hex digests, UUIDs, ISO timestamps,
seqs, counts, prices, networks) passes through untouched."""

from __future__ import annotations

import hashlib
import json
import logging
import string
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.canonical import canonical_json
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending, audit_event_record
from apps.core.masking import MASK, PII_MASK, is_pii_key, is_secret_key, mask, mask_text
from apps.core.pii import IBAN_LENGTHS, card_network_length_ok, iban_valid, luhn_valid

DIGITS = "0123456789"

# --- generators of personal data ------------------------------------------------------------

emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,20}[A-Za-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?(?:\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)


def digit_strings(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=DIGITS, min_size=size, max_size=size)


def _e164(country: str, rest: str) -> str:
    return f"+{country}{rest}"


e164 = st.integers(1, 3).flatmap(
    lambda cc_len: st.builds(
        _e164,
        st.from_regex(rf"[1-9][0-9]{{{cc_len - 1}}}", fullmatch=True),
        st.integers(8 - cc_len, 15 - cc_len).flatmap(digit_strings),
    )
)
e164_grouped = st.builds(
    lambda cc, groups: f"+{cc} " + " ".join(groups),
    st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True),
    st.lists(st.integers(2, 4).flatmap(digit_strings), min_size=3, max_size=4),
).filter(lambda phone: 8 <= sum(c.isdigit() for c in phone) <= 15)
nanp_parts = st.tuples(
    st.from_regex(r"[2-9][0-9]{2}", fullmatch=True),
    st.from_regex(r"[2-9][0-9]{2}", fullmatch=True),
    digit_strings(4),
)
nanp = st.one_of(
    nanp_parts.map(lambda p: f"({p[0]}) {p[1]}-{p[2]}"),
    nanp_parts.map(lambda p: f"{p[0]}-{p[1]}-{p[2]}"),
    nanp_parts.map(lambda p: f"{p[0]}.{p[1]}.{p[2]}"),
    nanp_parts.map(lambda p: f"1-{p[0]}-{p[1]}-{p[2]}"),
)
national = st.one_of(
    st.builds("0{} {} {}".format, digit_strings(2), digit_strings(4), digit_strings(4)),  # UK
    st.builds("07{} {}".format, digit_strings(3), digit_strings(6)),  # UK mobile
    digit_strings(9).map(lambda rest: f"07{rest}"),
    st.builds(  # FR
        lambda first, pairs: f"0{first} " + " ".join(pairs),
        st.sampled_from("123456789"),
        st.lists(digit_strings(2), min_size=4, max_size=4),
    ),
    st.builds("0{}-{}".format, digit_strings(2), digit_strings(8)),  # DE
)


phones = st.one_of(e164, e164_grouped, nanp, national)


def _ssn(area: int, group: int, serial: int, separator: str) -> str:
    return f"{area:03d}{separator}{group:02d}{separator}{serial:04d}"


ssns = st.builds(
    _ssn,
    st.integers(1, 899).filter(lambda area: area != 666),
    st.integers(1, 99),
    st.integers(1, 9999),
    st.sampled_from(["-", " "]),
)
ninos = st.builds(
    lambda prefix, digits, suffix, spaced: (
        f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
        if spaced
        else f"{prefix}{digits}{suffix}"
    ),
    st.from_regex(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]", fullmatch=True).filter(
        lambda prefix: prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
    ),
    digit_strings(6),
    st.sampled_from("ABCD"),
    st.booleans(),
)
DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _nie(prefix: str, number: int) -> str:
    value = int(f"{'XYZ'.index(prefix)}{number:07d}")
    return f"{prefix}{number:07d}{DNI_LETTERS[value % 23]}"


dnis = st.one_of(
    st.integers(0, 99_999_999).map(lambda n: f"{n:08d}{DNI_LETTERS[n % 23]}"),
    st.builds(_nie, st.sampled_from("XYZ"), st.integers(0, 9_999_999)),
)


def _iban(country: str, bban: str, grouped: bool) -> str:
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if grouped else iban


ibans = st.sampled_from(sorted(IBAN_LENGTHS)).flatmap(
    lambda country: st.builds(
        _iban,
        st.just(country),
        st.text(
            alphabet=DIGITS + string.ascii_uppercase,
            min_size=IBAN_LENGTHS[country] - 4,
            max_size=IBAN_LENGTHS[country] - 4,
        ),
        st.booleans(),
    )
)


def _luhn_complete(partial: str) -> str:
    for check in DIGITS:
        if luhn_valid(partial + check):
            return partial + check
    raise AssertionError("unreachable")


cards = st.one_of(
    digit_strings(14).map(lambda rest: _luhn_complete("4" + rest)),  # Visa 16
    st.tuples(st.integers(51, 55), digit_strings(13)).map(
        lambda p: _luhn_complete(f"{p[0]}{p[1]}")  # Mastercard 16
    ),
    st.tuples(st.sampled_from(["34", "37"]), digit_strings(12)).map(
        lambda p: _luhn_complete(p[0] + p[1])  # Amex 15
    ),
).flatmap(
    lambda number: st.sampled_from(
        [number, " ".join(number[i : i + 4] for i in range(0, len(number), 4))]
    )
)

# Surrounding text: no digits and no "@", so whatever digit or "@" survives came from the datum.
SURROUNDING = st.text(alphabet=string.ascii_letters + " .,;!?()'\"", max_size=30)


def _assert_masked(datum: str, before: str, after: str) -> str:
    masked = mask_text(f"{before} {datum} {after}")
    assert datum not in masked
    assert not any(char.isdigit() for char in masked), masked
    assert "@" not in masked
    return masked


@settings(max_examples=400, deadline=None)
@given(st.one_of(emails, phones, ssns, ninos, dnis, ibans, cards), SURROUNDING, SURROUNDING)
def test_personal_data_of_a_known_shape_is_masked_in_any_text(datum, before, after):
    _assert_masked(datum, before, after)


@settings(max_examples=200, deadline=None)
@given(ninos, SURROUNDING, SURROUNDING)
def test_a_nino_is_masked_whole_letters_included(nino, before, after):
    masked = mask_text(f"{before} {nino} {after}")
    assert nino not in masked and "[NATIONAL_ID]" in masked


@settings(max_examples=200, deadline=None)
@given(ibans)
def test_generated_ibans_are_valid_and_one_changed_digit_is_not(iban):
    assert iban_valid(iban)
    compact = iban.replace(" ", "")
    position = max(index for index, char in enumerate(compact) if char.isdigit())
    changed = f"{compact[:position]}{(int(compact[position]) + 1) % 10}{compact[position + 1 :]}"
    assert not iban_valid(changed)  # mod-97 catches every single-digit error


# --- what must pass through untouched -------------------------------------------------------

hex_digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda raw: hashlib.sha256(raw).hexdigest()),
    st.binary(min_size=20, max_size=20).map(bytes.hex),
    st.binary(min_size=16, max_size=32).map(lambda raw: raw.hex().upper()),
    st.text(alphabet=DIGITS, min_size=64, max_size=64),  # an all-digit digest, unlikely but valid
)
uuids = st.uuids().map(str) | st.uuids().map(lambda u: u.hex)
timezones = st.just(UTC) | st.builds(
    timezone, st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes))
)
iso_timestamps = st.one_of(
    st.builds(
        lambda moment, spec: moment.isoformat(timespec=spec),
        st.datetimes(timezones=timezones),
        st.sampled_from(["seconds", "milliseconds", "microseconds", "auto"]),
    ),
    st.dates().map(lambda day: day.isoformat()),
    st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")),
    # Unix time: seconds and milliseconds to 2100; microseconds from 2001-09-09 (16 digits
    # starting with 1) to 2039. From 2040 a microsecond count starts like a Mastercard number
    # (2221..2720) and, one time in ten, passes Luhn: it is then masked as a card.
    st.integers(0, 4_102_444_800).map(str),
    st.integers(0, 4_102_444_800_000).map(str),
    st.integers(10**15, 2_208_988_800_000_000).map(str),
)
counts = st.integers(-(10**12), 10**12).map(str)
prices = st.one_of(
    st.decimals(min_value=0, max_value=10**9, places=2).map(str),
    st.decimals(min_value=0, max_value=10**9, places=2).map(lambda d: f"${d:,.2f}"),
    st.integers(0, 10**12).map(lambda n: f"{n:,}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
networks = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"{ip}/24"),
)
ours = st.one_of(hex_digests, uuids, iso_timestamps, counts, prices, networks)
JOINERS = st.sampled_from([", ", "; ", " | ", "\n", " and ", " at ", "="])


@settings(max_examples=500, deadline=None)
@given(st.lists(ours, min_size=1, max_size=8), JOINERS)
def test_digests_uuids_timestamps_and_numbers_are_not_altered(values, joiner):
    text = joiner.join(values)
    assert mask_text(text) == text


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 10**9),
    iso_timestamps,
    hex_digests,
    hex_digests,
    uuids,
    st.dictionaries(
        st.sampled_from(["rows", "count", "price", "version", "model", "job_id", "grace_seconds"]),
        ours | st.integers(-(10**12), 10**12),
        max_size=5,
    ),
)
def test_an_audit_event_of_our_own_values_is_not_altered(seq, ts, digest, prev, request_id, data):
    event = {
        "seq": seq,
        "ts": ts,
        "action": "predict.succeeded",
        "actor": {"type": "user", "ref": "p_" + digest[:20]},
        "target": {"type": "model_version", "id": "pricing:3"},
        "request_id": request_id,
        "ip": "203.0.113.0/24",
        "details": data,
        "prev_hash": prev,
        "hash": digest,
    }
    assert mask(event) == event
    assert mask_text(canonical_json(event)) == canonical_json(event)


# --- idempotence and robustness -------------------------------------------------------------

FRAGMENTS = st.one_of(
    emails, phones, ssns, ninos, dnis, ibans, cards, ours,
    st.sampled_from(["password=", "token: ", "'secret': '", "Bearer ", "bwk_a1_", "email=",
                     '"phone": "', " ", "+", "-", ".", "@", "0", "(", ")", "x", "&", "[", "]"]),
    st.text(max_size=6),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=10).map("".join))
def test_masking_is_idempotent_on_any_mix(text):
    once = mask_text(text)
    assert mask_text(once) == once


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | FRAGMENTS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(["email", "phone", "dob"]), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_masking_never_raises_stays_json_and_is_idempotent(value):
    masked = mask(value)
    json.dumps(masked)
    assert mask(masked) == masked


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_masking_any_text_never_raises(text):
    assert isinstance(mask_text(text), str)


# --- by name --------------------------------------------------------------------------------


def test_keys_that_name_personal_data():
    for name in (
        "email", "Email", "user_email", "emailAddress", "e-mail", "phone", "phone_number",
        "mobile", "ssn", "national_id", "nationalId", "passport", "passport_number", "iban",
        "address", "home_address", "street_address", "date_of_birth", "dateOfBirth", "dob",
        "birth_date", "first_name", "lastName", "full_name", "postal_code", "tax_id",
    ):  # fmt: skip
        assert is_pii_key(name), name
    for name in (
        "username", "name", "model", "ip_address", "remote_address", "client_ip", "syntax_id",
        "emailed", "phoneme", "addressing", "request_id", "seq", "hash", "owner",
    ):  # fmt: skip
        assert not is_pii_key(name), name
    assert not is_secret_key("email")  # personal data, not a secret: its own marker


def test_values_under_pii_names_are_masked_whole_but_none_and_booleans_stay():
    value = {
        "email": "x",
        "phone": 4155552671,
        "customer": {"date_of_birth": "1990-01-01", "address": {"street": "1 Main St"}},
        "passport": None,
        "mobile": True,
        "password": "hunter2",
        "rows": 3,
    }
    assert mask(value) == {
        "email": PII_MASK,
        "phone": PII_MASK,
        "customer": {"date_of_birth": PII_MASK, "address": PII_MASK},
        "passport": None,
        "mobile": True,
        "password": MASK,
        "rows": 3,
    }


def test_pii_named_pairs_in_text_are_masked():
    text = "dob=1990-01-01 'date_of_birth': '1 Jan 1990' \"phone\": 4155552671 rows=3"
    masked = mask_text(text)
    assert "1990" not in masked and "4155552671" not in masked
    assert "rows=3" in masked
    assert masked.count(PII_MASK) == 3


def test_keys_made_of_personal_data_are_masked_too():
    assert mask({"bob@example.com": 3}) == {"[EMAIL]": 3}


def test_examples_of_each_shape():
    cases = {
        "write to bob.smith+x@mail.example.co.uk": "write to [EMAIL]",
        "call +1 (415) 555-2671 today": "call [PHONE] today",
        "call 020 7946 0958.": "call [PHONE].",
        "tel:+4915112345678": "tel:[PHONE]",
        "ssn 078-05-1120": "ssn [SSN]",
        "nino AB 12 34 56 C": "nino [NATIONAL_ID]",
        "dni 12345678Z": "dni [NATIONAL_ID]",
        "pay to DE89 3704 0044 0532 0130 00 please": "pay to [IBAN] please",
        "card 5555-5555-5555-4444": "card [MASKED_CARD]",
    }
    for text, expected in cases.items():
        assert mask_text(text) == expected, text


def test_near_misses_are_left_alone():
    for text in (
        "ssn 666-45-6789",  # never issued
        "nino GB 12 34 56 C",  # never issued
        "dni 12345678A",  # wrong check letter
        "DE89370400440532013001",  # wrong mod-97
        "4111 1111 1111 1112",  # Luhn fails
        "1700000000000",  # a millisecond timestamp, Luhn-valid or not
        "order 4155552671",  # bare digits: a count as likely as a phone number
        "v2.10.3 on 10.0.0.0/8, 2024-01-15 at 12:30:00",
    ):
        assert mask_text(text) == text, text


def test_card_network_rules():
    assert card_network_length_ok("4111111111111111")
    assert not card_network_length_ok("1234567812345670")
    assert not card_network_length_ok("378282246310005" + "0")  # Amex is 15 digits


# --- in the channels ------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_details_keep_no_personal_data_but_keep_our_values():
    digest = hashlib.sha256(b"x").hexdigest()
    audit_event_record(
        "property.checked",
        actor=None,
        details={
            "note": "customer bob@example.com, +44 20 7946 0958, IBAN GB82 WEST 1234 5698 7654 32",
            "email": "carol@example.com",
            "sha256": digest,
            "at": "2024-01-15T10:30:00.123456+00:00",
            "rows": 1234567,
        },
    )
    audit_chain_pending()
    body = AuditEvent.objects.order_by("-seq").values_list("body", flat=True).first()
    for personal in ("bob@", "carol@", "7946", "GB82", "WEST"):
        assert personal not in body
    details = json.loads(body)["details"]
    assert details["sha256"] == digest and details["rows"] == 1234567
    assert details["at"] == "2024-01-15T10:30:00.123456+00:00"


@pytest.mark.django_db
def test_log_records_keep_no_personal_data(log_output):
    logging.getLogger("bulwark.test").warning(
        "refund for %s to %s",
        "dave@example.com",
        "ES91 2100 0418 4502 0005 1332",
        extra={"phone": "4155552671", "customer": {"date_of_birth": "1990-01-01", "id": 7}},
    )
    output = log_output.getvalue()
    for personal in ("dave@", "ES91", "4155552671", "1990-01-01"):
        assert personal not in output
    line = json.loads(output.splitlines()[-1])
    assert line["phone"] == PII_MASK and line["customer"] == {"date_of_birth": PII_MASK, "id": 7}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(emails, phones, ssns, ninos, dnis, ibans, cards))
@pytest.mark.django_db
def test_no_generated_personal_datum_reaches_an_audit_event(datum):
    audit_event_record("property.checked", actor=None, details={"note": f"about {datum} ."})
    audit_chain_pending()
    body = AuditEvent.objects.order_by("-seq").values_list("body", flat=True).first()
    assert datum not in body
    assert json.loads(body)["action"] == "property.checked"
