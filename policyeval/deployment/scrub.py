"""Personal data scrubbing for deployment conversations, applied as they are imported.

Sampled production traffic may hold users' e-mail addresses, phone numbers, payment
card numbers and IP addresses. They are replaced by a typed placeholder (`[EMAIL]`,
`[PHONE]`, `[CARD]`, `[IP]`) before anything is stored, graded or shown in a report,
so no later stage ever holds them.

scrubadub (offline, no model downloads) finds and merges the spans; its phone detector
is python-phonenumbers, run for several regions because traffic is international. Three
of its stock detectors are replaced, for reasons the tests pin down:

* e-mail: scrubadub also reads " at " as "@", which scrubs ordinary text such as
  "meet me at 5.30"; here only a literal "@" address counts;
* payment cards: scrubadub's pattern misses numbers written in groups ("4111 1111 ...")
  and numbers at the start of a text, and has no checksum; here a card is 13-19 digits
  (optionally in groups split by single spaces or dashes) with a known issuer prefix
  that passes the Luhn check, so an order number of the same length stays;
* IP addresses: not covered by scrubadub; IPv4 and IPv6 are validated with `ipaddress`
  (a dotted version number such as 1.2.3.4 is scrubbed too: it cannot be told apart).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import scrubadub
from scrubadub.detectors import Detector, PhoneDetector
from scrubadub.filth import CreditCardFilth, EmailFilth, Filth

DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "CA", "AU")
PLACEHOLDERS = {"email": "EMAIL", "phone": "PHONE", "credit_card": "CARD", "ip_address": "IP"}


class IPAddressFilth(Filth):
    type = "ip_address"


class EmailDetector(Detector):
    """Addresses with a literal "@" and a dotted domain."""

    name = "email"
    filth_cls = EmailFilth
    _pattern = re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
        r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
        r"\.[A-Za-z]{2,63}\b"
    )

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        for match in self._pattern.finditer(text):
            yield EmailFilth(beg=match.start(), end=match.end(), text=match.group(),
                             detector_name=self.name, document_name=document_name, locale=self.locale)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# Issuer prefixes (IIN ranges) of the major networks: Visa, Mastercard, Amex, Discover,
# Diners, JCB, UnionPay, Maestro. A Luhn-valid number outside them is left alone.
_ISSUER = re.compile(
    r"^(?:4|5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720|3[47]|6011|64[4-9]|65|"
    r"30[0-5]|36|38|39|35(?:2[89]|[3-8]\d)|62|50|5[6-8]|6\d)"
)


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(_ISSUER.match(digits)) and luhn_valid(digits)


class PaymentCardDetector(Detector):
    """Luhn-valid card numbers with a known issuer prefix, plain or in groups."""

    name = "credit_card"
    filth_cls = CreditCardFilth
    # Digit groups joined by single spaces or dashes; checked group span by group span.
    _run = re.compile(r"(?<![\w.,-])\d+(?:[ \-]\d+)*(?![\w]|[.,]\d)")
    _group = re.compile(r"\d+")

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        for run in self._run.finditer(text):
            for beg, end in self._cards_in(run.group()):
                yield CreditCardFilth(beg=run.start() + beg, end=run.start() + end, text=run.group()[beg:end],
                                      detector_name=self.name, document_name=document_name, locale=self.locale)

    def _cards_in(self, run: str) -> list[tuple[int, int]]:
        """Longest non-overlapping spans of whole digit groups that are card numbers."""
        groups = [(m.start(), m.end()) for m in self._group.finditer(run)]
        found: list[tuple[int, int]] = []
        i = 0
        while i < len(groups):
            hit = None
            for j in range(len(groups) - 1, i - 1, -1):
                beg, end = groups[i][0], groups[j][1]
                span = run[beg:end]
                if is_card_number(re.sub(r"\D", "", span)):
                    hit = (j, beg, end)
                    break
            if hit is None:
                i += 1
            else:
                found.append((hit[1], hit[2]))
                i = hit[0] + 1
        return found


class IPAddressDetector(Detector):
    """IPv4 and IPv6 addresses that `ipaddress` accepts."""

    name = "ip_address"
    filth_cls = IPAddressFilth
    _v4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
    _v6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        for pattern, parse in ((self._v4, ipaddress.IPv4Address), (self._v6, ipaddress.IPv6Address)):
            for match in pattern.finditer(text):
                candidate = match.group()
                if pattern is self._v6 and not any(c.isdigit() for c in candidate):
                    continue
                try:
                    parse(candidate)
                except ValueError:
                    continue
                yield IPAddressFilth(beg=match.start(), end=match.end(), text=candidate,
                                     detector_name=self.name, document_name=document_name, locale=self.locale)


class RegionPhoneDetector(PhoneDetector):
    """scrubadub's phonenumbers detector for one region (its locale names are a poor fit: no en_DE)."""

    def __init__(self, region: str):
        super().__init__(name=f"phone_{region.lower()}")
        self.region = region.upper()


@dataclass
class PiiScrubber:
    """Replaces personal data with typed placeholders and counts what it replaced."""

    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        detectors: list[Detector] = [EmailDetector(), PaymentCardDetector(), IPAddressDetector()]
        detectors += [RegionPhoneDetector(region) for region in dict.fromkeys(r.upper() for r in self.phone_regions)]
        self._scrubber = scrubadub.Scrubber(detector_list=detectors, post_processor_list=[])

    def scrub(self, text: str) -> str:
        """`text` with every detected span replaced by its placeholder."""
        if not text:
            return text
        filths = sorted(self._scrubber.iter_filth(text), key=lambda f: (f.beg, -f.end))
        out, position = [], 0
        for filth in filths:
            if filth.beg < position:  # already inside a replaced span
                continue
            kinds = sorted({PLACEHOLDERS.get(f.type, f.type.upper()) for f in getattr(filth, "filths", [filth])})
            self.counts.update(kinds)
            out.append(text[position:filth.beg])
            out.append("[" + "+".join(kinds) + "]")
            position = filth.end
        out.append(text[position:])
        return "".join(out)


def scrub_text(text: str, phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> str:
    """One-off scrubbing; for many texts keep one `PiiScrubber` (it also counts)."""
    return PiiScrubber(phone_regions).scrub(text)
