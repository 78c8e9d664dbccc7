"""The vault at rest and across a key rotation: what an attacker holding the database (not the key) sees.

Complements ``core/test_vault.py`` (the store's behaviour): here the database is read raw, file
bytes and rows, on SQLite and Postgres, with the secret scanner; a rotation is checked for loss on
many entries; a wrong key is checked for what its error shows.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.vault import Vault, VaultEntryUnreadable, metadata, vault_entries
from ml_connector_dagster_tests.postgres import schema_url, throwaway_schema
from ml_connector_dagster_tests.security.secret_scan import Secret, SecretScanner, file_texts, table_texts

SECRETS = {
    "jira.refresh_token": "demo-refresh-1c4ea1e957ce7cd863392345f2fcc6d5eb0afc28",
    "asana.pat": "2/1209100000000011/1209100000009000:2868abeadd19af991e8667e5922bdcb3",
    "visma.client_secret": "sandbox-visma-client-secret-not-for-production",
    "asana.webhook_secret.hook": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "unicode": "pässwörd-ünïcødé-✓-秘密-0123456789",
}


def new_key() -> str:
    return Fernet.generate_key().decode()


def scanner_for(values: dict[str, str], *keys: str) -> SecretScanner:
    return SecretScanner([*(Secret(name, value) for name, value in values.items()),
                          *(Secret(f"key {n}", key) for n, key in enumerate(keys))])  # fmt: skip


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_admin: sa.Engine) -> Iterator[sa.Engine]:
    """The vault table in a throwaway schema of the machine's Postgres, dropped afterwards."""
    with throwaway_schema(postgres_admin, "vault_rest") as schema:
        # search_path rather than a schema map: the raw SQL and the reflection below see the schema too.
        engine = sa.create_engine(schema_url(schema))
        try:
            metadata.create_all(engine)
            yield engine
        finally:
            engine.dispose()


def raw_rows(engine: sa.Engine) -> list[tuple[str, str]]:
    """The vault table as a SQL client shows it, bypassing the Vault class."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, ciphertext, updated_at FROM vault_entries")).all()
    return [(f"row {row[0]}", " ".join(str(cell) for cell in row)) for row in rows]


def test_the_sqlite_file_holds_no_secret_in_any_form(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    key = new_key()
    vault = Vault(sqlite_engine, [key])
    for name, value in SECRETS.items():
        vault.put(name, value)
    vault.put("jira.refresh_token", SECRETS["jira.refresh_token"] + "-rotated")  # an overwritten value too
    sqlite_engine.dispose()  # everything on disk, nothing only in a connection's cache
    scanner = scanner_for({**SECRETS, "rotated": SECRETS["jira.refresh_token"] + "-rotated"}, key)
    assert scanner.scan_all(file_texts(tmp_path)) == []
    assert scanner.scan_all(raw_rows(sqlite_engine)) == []


def test_a_secret_appears_in_the_file_when_stored_in_clear_so_the_scan_can_see(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'clear.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (v TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": SECRETS["asana.pat"]})
    engine.dispose()
    assert [f.secret for f in scanner_for(SECRETS).scan_all(file_texts(tmp_path))] == ["asana.pat"]


@pytest.mark.postgres
def test_postgres_rows_hold_no_secret_in_any_form(postgres_engine: sa.Engine) -> None:
    key = new_key()
    vault = Vault(postgres_engine, [key])
    for name, value in SECRETS.items():
        vault.put(name, value)
    rows = raw_rows(postgres_engine)
    assert len(rows) == len(SECRETS)
    assert scanner_for(SECRETS, key).scan_all(rows) == []
    assert scanner_for(SECRETS, key).scan_all(table_texts(postgres_engine)) == []


def test_every_entry_is_a_fernet_token_of_the_primary_key(sqlite_engine: sa.Engine) -> None:
    key = new_key()
    Vault(sqlite_engine, [key]).put("asana.pat", SECRETS["asana.pat"])
    with sqlite_engine.connect() as conn:
        ciphertext = conn.execute(sa.select(vault_entries.c.ciphertext)).scalar_one()
    assert Fernet(key).decrypt(ciphertext.encode()).decode() == SECRETS["asana.pat"]
    assert ciphertext != Vault(sqlite_engine, [key])._encrypt(SECRETS["asana.pat"])  # a fresh IV each time


@settings(max_examples=20, deadline=None)
@given(values=st.dictionaries(st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
                              st.text(st.characters(codec="utf-8"), max_size=300), min_size=1, max_size=25))  # fmt: skip
def test_a_rotation_re_encrypts_every_entry_without_loss(tmp_path_factory: pytest.TempPathFactory,
                                                         values: dict[str, str]) -> None:  # fmt: skip
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('rotation') / 'ledger.db'}")
    metadata.create_all(engine)
    old, new = new_key(), new_key()
    try:
        for name, value in values.items():
            Vault(engine, [old]).put(name, value)
        assert Vault(engine, [new, old]).rotate() == len(values)
        after = Vault(engine, [new])
        assert {name: after.get(name) for name in values} == values
        with engine.connect() as conn:
            for ciphertext in conn.execute(sa.select(vault_entries.c.ciphertext)).scalars():
                with pytest.raises(Exception):  # noqa: B017 - any refusal: the old key reads nothing now
                    Fernet(old).decrypt(ciphertext.encode())
    finally:
        engine.dispose()


def test_during_a_rotation_entries_under_the_old_key_only_still_decrypt(sqlite_engine: sa.Engine) -> None:
    old, new = new_key(), new_key()
    Vault(sqlite_engine, [old]).put("jira.refresh_token", SECRETS["jira.refresh_token"])
    rotating = Vault(sqlite_engine, [new, old])  # the new key deployed first, rotate() not run yet
    rotating.put("asana.pat", SECRETS["asana.pat"])
    assert rotating.get("jira.refresh_token") == SECRETS["jira.refresh_token"]
    assert rotating.compare_and_swap("jira.refresh_token", SECRETS["jira.refresh_token"], "rt-2")
    assert Vault(sqlite_engine, [new]).get("jira.refresh_token") == "rt-2"  # a write re-encrypts under new
    assert Vault(sqlite_engine, [new]).get("asana.pat") == SECRETS["asana.pat"]


def test_a_rotation_run_twice_changes_nothing_the_second_time(sqlite_engine: sa.Engine) -> None:
    old, new = new_key(), new_key()
    for name, value in SECRETS.items():
        Vault(sqlite_engine, [old]).put(name, value)
    Vault(sqlite_engine, [new, old]).rotate()
    assert Vault(sqlite_engine, [new, old]).rotate() == len(SECRETS)
    assert {name: Vault(sqlite_engine, [new]).get(name) for name in SECRETS} == SECRETS


def test_a_wrong_key_names_the_entry_and_shows_no_secret_key_or_ciphertext(sqlite_engine: sa.Engine) -> None:
    right, wrong = new_key(), new_key()
    Vault(sqlite_engine, [right]).put("jira.refresh_token", SECRETS["jira.refresh_token"])
    with sqlite_engine.connect() as conn:
        ciphertext = conn.execute(sa.select(vault_entries.c.ciphertext)).scalar_one()
    with pytest.raises(VaultEntryUnreadable) as caught:
        Vault(sqlite_engine, [wrong]).get("jira.refresh_token")
    shown = "".join(traceback.format_exception(caught.value))
    assert "jira.refresh_token" in str(caught.value)
    scanner = SecretScanner([Secret("refresh", SECRETS["jira.refresh_token"]), Secret("right key", right),
                             Secret("wrong key", wrong), Secret("ciphertext", ciphertext)])  # fmt: skip
    assert scanner.scan(shown, "the error and its traceback") == []


def test_a_rotation_with_a_wrong_key_shows_no_secret_either(sqlite_engine: sa.Engine) -> None:
    right, wrong, new = new_key(), new_key(), new_key()
    Vault(sqlite_engine, [right]).put("asana.pat", SECRETS["asana.pat"])
    with pytest.raises(VaultEntryUnreadable) as caught:
        Vault(sqlite_engine, [new, wrong]).rotate()
    shown = "".join(traceback.format_exception(caught.value))
    scanner = scanner_for({"asana.pat": SECRETS["asana.pat"]}, right, wrong, new)
    assert scanner.scan(shown, "the rotation error") == []
