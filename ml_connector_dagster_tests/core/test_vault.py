"""Specification of core/vault.py: the encrypted credential store (SQLite and Postgres)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from ml_connector_dagster.core.oauth import SwappingTokenStore
from ml_connector_dagster.core.vault import (
    SECRET_KEY_ENV,
    Vault,
    VaultEntryUnreadable,
    VaultKeyInvalid,
    VaultKeyMissing,
    metadata,
    vault_entries,
)
from ml_connector_dagster_tests.postgres import throwaway_schema

REFRESH_TOKEN = "rt-plaintext-5b1e9c"


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def vault(engine: sa.Engine) -> Vault:
    return Vault(engine, [new_key()])


def stored_ciphertexts(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(vault_entries.c.name, vault_entries.c.ciphertext)).all())


def test_a_value_put_is_got_back(vault: Vault) -> None:
    vault.put("jira.refresh_token", REFRESH_TOKEN)
    assert vault.get("jira.refresh_token") == REFRESH_TOKEN


def test_an_absent_name_reads_as_none(vault: Vault) -> None:
    assert vault.get("nothing.here") is None


def test_put_replaces_the_previous_value(vault: Vault) -> None:
    vault.put("asana.pat", "first")
    vault.put("asana.pat", "second")
    assert vault.get("asana.pat") == "second"
    assert vault.names() == ["asana.pat"]


def test_load_and_save_are_the_token_store_view_of_get_and_put(vault: Vault) -> None:
    vault.save("jira.refresh_token", REFRESH_TOKEN)
    assert vault.load("jira.refresh_token") == REFRESH_TOKEN
    assert isinstance(vault, SwappingTokenStore)


def test_delete_removes_an_entry_and_tolerates_absent_ones(vault: Vault) -> None:
    vault.put("monday.token", "x")
    vault.delete("monday.token")
    vault.delete("monday.token")
    assert vault.get("monday.token") is None


def test_the_table_holds_ciphertext_only(vault: Vault, engine: sa.Engine) -> None:
    vault.put("jira.refresh_token", REFRESH_TOKEN)
    ciphertext = stored_ciphertexts(engine)["jira.refresh_token"]
    assert REFRESH_TOKEN not in ciphertext
    assert ciphertext.startswith("gAAAAA")  # a Fernet token


def test_every_write_has_an_aware_updated_at(vault: Vault, engine: sa.Engine) -> None:
    vault.put("jira.refresh_token", REFRESH_TOKEN)
    with engine.connect() as conn:
        assert conn.execute(sa.select(vault_entries.c.updated_at)).scalar_one() is not None


def test_compare_and_swap_replaces_only_the_expected_value(vault: Vault) -> None:
    vault.put("jira.refresh_token", "rt-1")
    assert vault.compare_and_swap("jira.refresh_token", "rt-1", "rt-2")
    assert not vault.compare_and_swap("jira.refresh_token", "rt-1", "rt-3")
    assert vault.get("jira.refresh_token") == "rt-2"


def test_compare_and_swap_with_none_inserts_only_when_absent(vault: Vault) -> None:
    assert vault.compare_and_swap("jira.refresh_token", None, "rt-1")
    assert not vault.compare_and_swap("jira.refresh_token", None, "rt-other")
    assert not vault.compare_and_swap("absent", "rt-1", "rt-2")
    assert vault.get("jira.refresh_token") == "rt-1"
    assert vault.get("absent") is None


def test_rotation_re_encrypts_every_entry_under_the_new_primary_key(engine: sa.Engine) -> None:
    old, new = new_key(), new_key()
    Vault(engine, [old]).put("a", "alpha")
    Vault(engine, [old]).put("b", "beta")
    assert Vault(engine, [new, old]).rotate() == 2
    only_new = Vault(engine, [new])
    assert (only_new.get("a"), only_new.get("b")) == ("alpha", "beta")
    with pytest.raises(VaultEntryUnreadable):
        Vault(engine, [old]).get("a")


def test_rotation_with_an_unreadable_entry_changes_nothing(engine: sa.Engine) -> None:
    first, stranger, new = new_key(), new_key(), new_key()
    Vault(engine, [first]).put("a", "alpha")
    Vault(engine, [stranger]).put("b", "beta")
    before = stored_ciphertexts(engine)
    with pytest.raises(VaultEntryUnreadable, match="'b'"):
        Vault(engine, [new, first]).rotate()
    assert stored_ciphertexts(engine) == before


def test_an_entry_under_an_unknown_key_names_the_entry_and_the_likely_cause(engine: sa.Engine) -> None:
    Vault(engine, [new_key()]).put("jira.refresh_token", REFRESH_TOKEN)
    with pytest.raises(VaultEntryUnreadable, match="jira.refresh_token") as caught:
        Vault(engine, [new_key()]).get("jira.refresh_token")
    assert SECRET_KEY_ENV in str(caught.value)


def test_the_repr_never_shows_a_key(engine: sa.Engine) -> None:
    key = new_key()
    text = repr(Vault(engine, [key]))
    assert key not in text
    assert "keys=1" in text


def test_an_invalid_key_is_named_by_position_not_by_value(engine: sa.Engine) -> None:
    with pytest.raises(VaultKeyInvalid, match="key #2 of 2") as caught:
        Vault(engine, [new_key(), "not-a-fernet-key-xyz"])
    assert "not-a-fernet-key-xyz" not in str(caught.value)


def test_from_env_reads_comma_separated_keys_primary_first(engine: sa.Engine, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    Vault(engine, [old]).put("a", "alpha")
    vault = Vault.from_env(engine, sandbox=False, home=tmp_path, environ={SECRET_KEY_ENV: f" {new} , {old} "})
    assert vault.get("a") == "alpha"
    vault.put("b", "beta")
    assert Vault(engine, [new]).get("b") == "beta"


def test_from_env_outside_the_sandbox_without_a_key_explains_how_to_make_one(engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(VaultKeyMissing) as caught:
        Vault.from_env(engine, sandbox=False, home=tmp_path, environ={})
    message = str(caught.value)
    assert SECRET_KEY_ENV in message
    assert "Fernet.generate_key()" in message
    assert not (tmp_path / "sandbox.key").exists()


def test_from_env_reads_the_process_environment(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with pytest.raises(VaultKeyMissing):
        Vault.from_env(engine, sandbox=False, home=tmp_path)
    monkeypatch.setenv(SECRET_KEY_ENV, new_key())
    Vault.from_env(engine, sandbox=False, home=tmp_path).put("a", "alpha")


def test_the_sandbox_generates_a_private_key_file_once(engine: sa.Engine, tmp_path: Path) -> None:
    home = tmp_path / "home"
    Vault.from_env(engine, sandbox=True, home=home, environ={}).put("a", "alpha")
    key_file = home / "sandbox.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    first_key = key_file.read_text()
    assert Vault.from_env(engine, sandbox=True, home=home, environ={}).get("a") == "alpha"
    assert key_file.read_text() == first_key
    assert [p.name for p in home.iterdir()] == ["sandbox.key"]


def test_the_sandbox_prefers_a_configured_key(engine: sa.Engine, tmp_path: Path) -> None:
    Vault.from_env(engine, sandbox=True, home=tmp_path, environ={SECRET_KEY_ENV: new_key()})
    assert not (tmp_path / "sandbox.key").exists()


# --- Postgres --------------------------------------------------------------------------------------


@pytest.fixture
def postgres_engine(postgres_admin: sa.Engine) -> Iterator[sa.Engine]:
    """The vault table in a throwaway schema of the machine's Postgres, dropped afterwards."""
    with throwaway_schema(postgres_admin, "vault_test") as schema:
        engine = postgres_admin.execution_options(schema_translate_map={None: schema})
        metadata.create_all(engine)
        yield engine


@pytest.mark.postgres
def test_a_value_round_trips_through_postgres_encrypted(postgres_engine: sa.Engine) -> None:
    key = new_key()
    vault = Vault(postgres_engine, [key])
    vault.put("jira.refresh_token", REFRESH_TOKEN)
    vault.put("jira.refresh_token", REFRESH_TOKEN + "-2")
    assert vault.get("jira.refresh_token") == REFRESH_TOKEN + "-2"
    assert REFRESH_TOKEN not in stored_ciphertexts(postgres_engine)["jira.refresh_token"]
    assert vault.compare_and_swap("jira.refresh_token", REFRESH_TOKEN + "-2", "rt-3")
    assert not vault.compare_and_swap("jira.refresh_token", None, "rt-4")
    assert Vault(postgres_engine, [new_key(), key]).rotate() == 1
