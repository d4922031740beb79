"""Join tokens: signed, expiring, bound to one room and role."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.tokens import TokenError, TokenSigner

SECRET = b"0123456789abcdef0123456789abcdef"


def test_round_trip_carries_room_role_and_expiry() -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    token, expires_at = signer.issue("room1", "host", now=1000)
    grant = signer.verify(token, room_id="room1", now=1001)
    assert (grant.room_id, grant.role, grant.expires_at) == ("room1", "host", 1600)
    assert expires_at == 1600


def test_expired_token_is_refused() -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    token, _ = signer.issue("room1", "participant", now=1000)
    with pytest.raises(TokenError) as err:
        signer.verify(token, now=1600)
    assert err.value.code == "token_expired"


def test_token_for_another_room_is_refused() -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    token, _ = signer.issue("room1", "participant")
    with pytest.raises(TokenError) as err:
        signer.verify(token, room_id="room2")
    assert err.value.code == "wrong_room"


def test_token_signed_with_another_secret_is_refused() -> None:
    token, _ = TokenSigner(b"another-secret-of-32-bytes-xxxxx", 600).issue("room1", "host")
    with pytest.raises(TokenError) as err:
        TokenSigner(SECRET, 600).verify(token)
    assert err.value.code == "invalid_token"


def test_raising_the_role_breaks_the_signature() -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    participant, _ = signer.issue("room1", "participant")
    host, _ = signer.issue("room1", "host")
    forged = host.split(".")[0] + "." + participant.split(".")[1]
    with pytest.raises(TokenError) as err:
        signer.verify(forged)
    assert err.value.code == "invalid_token"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner(b"short", 600)


@given(st.text(max_size=600))
def test_arbitrary_strings_never_verify(text: str) -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    with pytest.raises(TokenError) as err:
        signer.verify(text)
    assert err.value.code == "invalid_token"


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=200))
def test_any_bit_flip_is_detected(garbage: bytes, position: int) -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    token, _ = signer.issue("room1", "participant")
    index = position % len(token)
    replacement = "A" if token[index] != "A" else "B"
    tampered = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(TokenError):
        signer.verify(tampered)


def test_a_summary_token_says_so_and_plain_tokens_do_not() -> None:
    signer = TokenSigner(SECRET, ttl_seconds=600)
    summary, _ = signer.issue("room1", "host", now=1000, participant_id="p1", summary_only=True)
    plain, _ = signer.issue("room1", "host", now=1000, participant_id="p1")
    assert signer.verify(summary, now=1001).summary_only
    assert not signer.verify(plain, now=1001).summary_only
