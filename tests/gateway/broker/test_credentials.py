"""Password-file and ACL handling (property tests; real Mosquitto reads them in
test_field_broker.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.broker.credentials import (
    CredentialsError,
    device_rules,
    hash_password,
    read_acl,
    read_passwords,
    set_acl,
    set_password,
    verify_password,
)

users = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
passwords = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60)
@given(passwords, passwords)
def test_hash_verifies_its_password_only(pw: str, other: str) -> None:
    encoded = hash_password(pw)
    assert encoded.startswith("$7$101$")
    assert verify_password(encoded, pw)
    assert verify_password(encoded, other) == (other == pw)


@settings(max_examples=300)
@given(st.text(max_size=200), passwords)
def test_verify_never_raises_on_any_entry(encoded: str, pw: str) -> None:
    assert verify_password(encoded, pw) in (True, False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(users, st.sampled_from(["hamlet", "tasmota", "esphome"])), max_size=8))
def test_acl_blocks_follow_the_last_call_per_user(ops: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "acl"
        want: dict[str, list[str]] = {}
        for user, preset in ops:
            rules = device_rules(user, preset)  # type: ignore[arg-type]
            changed = set_acl(path, user, rules)
            assert changed == (want.get(user) != rules)
            want[user] = rules
        if ops:
            assert read_acl(path).blocks == want
            before = path.read_bytes()
            for user, rules in want.items():
                assert set_acl(path, user, rules) is False  # idempotent ...
            assert path.read_bytes() == before  # ... byte for byte
            text = path.read_text()
            for user in want:
                assert text.count(f"\nuser {user}\n") == 1


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_read_acl_never_raises(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "acl"
        path.write_text(text, encoding="utf-8", errors="replace")
        acl = read_acl(path)
        # Whatever it read, writing it back and reading again gives the same blocks.
        path.write_text(acl.text(), encoding="utf-8")
        assert read_acl(path).blocks == acl.blocks


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(users, passwords, min_size=1, max_size=5))
def test_password_file_keeps_every_user(entries: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "passwd"
        for user, pw in entries.items():
            assert set_password(path, user, pw, use_tool=False) is True
            assert set_password(path, user, pw, use_tool=False) is False
        stored = read_passwords(path)
        assert sorted(stored) == sorted(entries)
        for user, pw in entries.items():
            assert verify_password(stored[user], pw)


@pytest.mark.parametrize("bad", ["a:b", "a/b", "+", "#", "a b", "", "x" * 65, "dev\n"])
def test_user_names_that_cannot_be_broker_users(bad: str) -> None:
    with pytest.raises(CredentialsError):
        device_rules(bad)
