"""Webhook signatures: what a receiver checks before trusting a delivery."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.signing import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SignatureError,
    new_secret,
    sign,
    signature_headers,
    verify_signature,
)

SECRET = "whsec_test-secret-of-enough-length"
NOW = 1_764_086_400
BODY = b'{"event":{"type":"project.staffed"}}'


def signed(body: bytes = BODY, *, secret: str = SECRET, at: int = NOW) -> dict[str, str]:
    return signature_headers(secret, body, timestamp=at)


def test_a_genuine_delivery_verifies_and_returns_its_timestamp():
    assert verify_signature(SECRET, signed(), BODY, now=NOW + 5) == NOW


def test_the_algorithm_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert signed()[HEADER_SIGNATURE] == f"v1={expected}"
    assert signed()[HEADER_TIMESTAMP] == str(NOW)


def test_a_wrong_secret_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("whsec_someone-elses-secret-xxxxxx", signed(), BODY, now=NOW)


def test_an_altered_body_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, signed(), BODY.replace(b"staffed", b"cancelled"), now=NOW)


def test_an_old_timestamp_is_refused_even_with_a_valid_signature():
    with pytest.raises(SignatureError, match="old"):
        verify_signature(SECRET, signed(at=NOW - 301), BODY, tolerance=300, now=NOW)
    assert verify_signature(SECRET, signed(at=NOW - 299), BODY, tolerance=300, now=NOW)


def test_a_timestamp_from_the_future_is_refused():
    with pytest.raises(SignatureError, match="future"):
        verify_signature(SECRET, signed(at=NOW + 3600), BODY, now=NOW)


def test_a_moved_timestamp_breaks_the_signature():
    headers = signed(at=NOW - 1000)
    headers[HEADER_TIMESTAMP] = str(NOW)  # replayer freshens the timestamp
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing Mf-Timestamp"),
        ({HEADER_TIMESTAMP: str(NOW)}, "missing Mf-Signature"),
        ({HEADER_TIMESTAMP: "yesterday", HEADER_SIGNATURE: "v1=00"}, "not Unix seconds"),
        ({HEADER_TIMESTAMP: str(NOW), HEADER_SIGNATURE: "sha1=00"}, "no v1= signature"),
    ],
)
def test_malformed_headers_are_refused_with_the_reason(headers, reason):
    with pytest.raises(SignatureError, match=reason):
        verify_signature(SECRET, headers, BODY, now=NOW)


def test_header_names_are_case_insensitive_as_in_http():
    lowered = {name.lower(): value for name, value in signed().items()}
    assert verify_signature(SECRET, lowered, BODY, now=NOW) == NOW


def test_any_of_several_signatures_matches_during_secret_rotation():
    old = sign("whsec_previous-secret-xxxxxxxxxxxxx", NOW, BODY)
    headers = signed()
    headers[HEADER_SIGNATURE] = f"v1={old}, {headers[HEADER_SIGNATURE]}"
    assert verify_signature(SECRET, headers, BODY, now=NOW) == NOW


def test_generated_secrets_are_distinct_and_prefixed():
    first, second = new_secret(), new_secret()
    assert first != second and first.startswith("whsec_") and len(first) > 30


@given(
    body=st.binary(max_size=2000),
    secret=st.text(min_size=1, max_size=80),
    skew=st.integers(-300, 300),
)
def test_whatever_is_signed_verifies_within_the_tolerance(body, secret, skew):
    headers = signature_headers(secret, body, timestamp=NOW)
    assert verify_signature(secret, headers, body, tolerance=300, now=NOW + skew) == NOW


@given(body=st.binary(min_size=1, max_size=500), flip=st.integers(0, 499))
def test_any_single_byte_change_is_detected(body, flip):
    headers = signed(body)
    index = flip % len(body)
    altered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    with pytest.raises(SignatureError):
        verify_signature(SECRET, headers, altered, now=NOW)
