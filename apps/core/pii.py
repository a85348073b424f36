"""Personal data recognised by its shape: the value patterns of the masking module.

Each detector finds candidates with a regular expression and keeps only those that pass the
format's own check (Luhn and the network's prefix and length for cards, mod-97 and the
country's length for IBANs, the check letter of Spanish DNI/NIE, the issuing rules of US SSNs
and UK NINOs, the digit count of phone numbers). Digits are ASCII and every candidate is
anchored on token boundaries, so what our own records are made of stays whole: SHA-256 hex,
UUIDs, ISO timestamps, seqs, counts, prices, IP networks, key prefixes.

Deliberately not recognised: a bare run of digits that is not an E.164 number (`+...`) or a
UK mobile (`07...`): `4155552671` is as likely a count as a phone number. Names, street
addresses and birth dates have no reliable shape; they are masked by their key's name.
Knowingly over-masked: a 13-19 digit number that starts like a card of that length and
passes Luhn is a card, whatever it counts (Unix microseconds from 2040 may be, one in ten).
"""

from __future__ import annotations

import re
from collections.abc import Callable

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[MASKED_CARD]"
IBAN = "[IBAN]"
SSN = "[SSN]"
NATIONAL_ID = "[NATIONAL_ID]"

# A candidate starts where no token continues into it: not after a letter, digit, underscore
# or `+`, not after `x-`/`x.`/`x+` (UUID groups, decimals, exponents), not after `1:`/`1/`/`1,`
# (times, networks, thousands). It ends the same way on the right.
_START = r"(?<![A-Za-z0-9_@+])(?<![A-Za-z0-9_][-.+])(?<![0-9][:/,])"
_END = r"(?![A-Za-z0-9_@])(?![-.:/,+][A-Za-z0-9_])"

EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"
)


def _digits(text: str) -> str:
    return "".join(char for char in text if "0" <= char <= "9")


# --- phone numbers --------------------------------------------------------------------------
# E.164 (`+` and 8 to 15 digits), bare or in groups; NANP `(415) 555-2671`, `415-555-2671`,
# `415.555.2671`; numbers with a trunk 0 in groups with one kind of separator (UK, FR, DE, ...:
# `020 7946 0958`, `01 23 45 67 89`, `030-12345678`); UK mobiles written without spaces.
_INTERNATIONAL_RE = re.compile(
    _START
    + r"(?:\+[0-9]{8,15}|\+[0-9]{1,4}(?:[ .-]?\([0-9]{1,5}\))?(?:[ .-][0-9]{1,6}){1,7})"
    + _END
)
_NATIONAL_RE = re.compile(
    _START
    + r"(?:"
    + r"(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}(?P<nanp>[ .-]))"
    + r"[2-9][0-9]{2}(?(nanp)(?P=nanp)|[ .-])[0-9]{4}"
    + r"|\(0[0-9]{1,4}\) ?[0-9]{2,8}(?: [0-9]{2,8}){0,3}"
    + r"|0[0-9]{1,4}(?P<trunk>[ .-])[0-9]{2,8}(?:(?P=trunk)[0-9]{2,8}){0,3}"
    + r"|07[0-9]{9}"
    + r")"
    + _END
)


def _within(text: str, low: int, high: int) -> str:
    """PHONE for `text` if it has low..high digits; if it has more (the groups ran on into the
    next number), PHONE for its longest leading groups that do, the rest kept; else `text`."""
    if low <= len(_digits(text)) <= high:
        return PHONE
    for end in range(len(text) - 1, 0, -1):
        if text[end] in " .-" and low <= len(_digits(text[:end])) <= high:
            return PHONE + text[end:]
    return text


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.startswith("+"):
        return _within(text, 8, 15)
    if text.startswith(("0", "(0")) and not text.isdigit():
        return _within(text, 9, 12)
    return PHONE  # NANP and UK mobiles (07 and 9 digits): the pattern is already exact


# --- payment cards ----------------------------------------------------------------------
# Contiguous, or in groups of 3 to 6 after a first group of 4 (4-4-4-4, 4-6-5, 4-6-4, ...),
# with one kind of separator.
_CARD_RE = re.compile(
    _START + r"(?:[0-9]{13,19}|[0-9]{4}(?P<sep>[ -])[0-9]{3,6}(?:(?P=sep)[0-9]{3,6}){1,3})" + _END
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_network_length_ok(digits: str) -> bool:
    """Whether the number starts like a card of a network that issues that length. Counts and
    millisecond timestamps (starting with 1) are not card numbers, even when Luhn-valid."""
    length = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":  # Visa (13-digit cards are no longer issued; ms timestamps are 13)
        return length in (16, 19)
    if two in (34, 37):  # American Express
        return length == 15
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return length == 16
    if 3528 <= four <= 3589 or digits[0] == "6":  # JCB, Discover, UnionPay, Maestro 6x
        return 16 <= length <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:  # Diners Club
        return 14 <= length <= 19
    return two in (50, 56, 57, 58) and 13 <= length <= 19  # Maestro


def _card(match: re.Match[str]) -> str:
    digits = _digits(match.group(0))
    if 13 <= len(digits) <= 19 and card_network_length_ok(digits) and luhn_valid(digits):
        return CARD
    return match.group(0)


# --- IBAN (mod-97, ISO 13616) ---------------------------------------------------------------
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9_])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9_])"
)


def iban_valid(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isascii() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban(match: re.Match[str]) -> str:
    # Written in groups, an IBAN may run into the next word ("... 0130 00 and"): drop trailing
    # groups until what is left is an IBAN, if anything is.
    groups = match.group(0).split(" ")
    for end in range(len(groups), 0, -1):
        if iban_valid("".join(groups[:end])):
            return " ".join([IBAN, *groups[end:]])
    return match.group(0)


# --- national identifiers -------------------------------------------------------------------
# US Social Security number: never area 000, 666 or 9xx, group 00 or serial 0000.
_SSN_RE = re.compile(_START + r"([0-9]{3})(?P<ssep>[- ])([0-9]{2})(?P=ssep)([0-9]{4})" + _END)


def _ssn(match: re.Match[str]) -> str:
    area, group, serial = match.group(1), match.group(3), match.group(4)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return match.group(0)
    return SSN


# UK National Insurance number: two prefix letters (not D, F, I, Q, U, V; second not O; never
# BG, GB, KN, NK, NT, TN, ZZ), six digits, a suffix A to D.
_NINO_RE = re.compile(
    r"(?<![A-Za-z0-9_])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?"
    r"[A-D](?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_NINO_NEVER = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _nino(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1).upper() in _NINO_NEVER else NATIONAL_ID


# Spanish DNI (8 digits and a check letter) and NIE (X, Y or Z, 7 digits, check letter): the
# letter is the number mod 23 in this table. Upper case, as they are issued.
_DNI_RE = re.compile(r"(?<![A-Za-z0-9_])([XYZ]?)([0-9]{7,8})-?([A-Z])(?![A-Za-z0-9_])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(prefix: str, number: str, letter: str) -> bool:
    if len(prefix) + len(number) != 8:
        return False
    value = int(str("XYZ".index(prefix)) + number) if prefix else int(number)
    return _DNI_LETTERS[value % 23] == letter


def _dni(match: re.Match[str]) -> str:
    return NATIONAL_ID if dni_valid(*match.groups()) else match.group(0)


# In this order: e-mail addresses, IBANs and `+` numbers contain digit groups the later rules
# would take; SSNs and cards before national phone numbers (078-05-1120 is an SSN).
DETECTORS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (EMAIL_RE, EMAIL),
    (_IBAN_RE, _iban),
    (_INTERNATIONAL_RE, _phone),
    (_CARD_RE, _card),
    (_SSN_RE, _ssn),
    (_NINO_RE, _nino),
    (_DNI_RE, _dni),
    (_NATIONAL_RE, _phone),
)
# Every pattern needs a digit or an `@`: text without either is skipped at once.
HINT = re.compile(r"[0-9@]")


def scrub(text: str) -> str:
    """`text` with every personal datum of a recognised shape replaced by its marker."""
    if not HINT.search(text):
        return text
    for pattern, replacement in DETECTORS:
        text = pattern.sub(replacement, text)
    return text
