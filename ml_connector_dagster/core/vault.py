"""The encrypted credential store: MultiFernet ciphertext in the ``vault_entries`` table.

The table is declared here with its own MetaData (the ledger's alembic migration creates the same
table in production; tests call ``metadata.create_all``). Keys come from ``ML_CONNECTOR_SECRET_KEY``:
comma-separated Fernet keys, the first encrypts, all decrypt, so a key is rotated by putting the new
key first, calling :meth:`Vault.rotate`, then dropping the old key.
"""

from __future__ import annotations

import os
import secrets as pysecrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .ledger import WRITE_OPTION, Ledger

__all__ = [
    "SECRET_KEY_ENV",
    "Vault",
    "VaultEntryUnreadable",
    "VaultKeyInvalid",
    "VaultKeyMissing",
    "metadata",
    "opened_vault",
    "vault_entries",
]

SECRET_KEY_ENV = "ML_CONNECTOR_SECRET_KEY"
SANDBOX_KEY_FILE = "sandbox.key"
MAX_NAME_LENGTH = 200

metadata = sa.MetaData()

vault_entries = sa.Table(
    "vault_entries",
    metadata,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("ciphertext", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

_GENERATE_KEY_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class VaultKeyMissing(RuntimeError):
    """No encryption key is configured."""

    def __init__(self) -> None:
        super().__init__(
            f"{SECRET_KEY_ENV} is not set, so credentials cannot be stored or read. Generate a key with\n"
            f"    {_GENERATE_KEY_COMMAND}\n"
            f"and set {SECRET_KEY_ENV} to it. To rotate later, put the new key first and keep the old "
            "ones after it, comma-separated, until `Vault.rotate()` has run."
        )


class VaultKeyInvalid(ValueError):
    """A configured key is not a Fernet key (the message names its position, never its value)."""


class VaultEntryUnreadable(RuntimeError):
    """An entry cannot be decrypted with any configured key."""


def _parse_keys(raw: str) -> list[str]:
    return [key.strip() for key in raw.split(",") if key.strip()]


def _sandbox_key(home: Path) -> str:
    """The sandbox's key, generated once into ``home/sandbox.key`` (mode 0600)."""
    path = home / SANDBOX_KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temp file, then linked into place: a concurrent starter either
        # wins the link or reads the winner's complete key, never a half-written file.
        temp = home / f".{SANDBOX_KEY_FILE}.{os.getpid()}.{pysecrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(Fernet.generate_key().decode() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
    keys = _parse_keys(path.read_text())
    if not keys:
        raise VaultKeyInvalid(f"{path} is empty; delete it to have a new sandbox key generated")
    return keys[0]


class Vault:
    """Encrypted name -> secret store; implements :class:`~.oauth.TokenStore` (and compare-and-swap)."""

    def __init__(self, engine: Engine, keys: Sequence[str]) -> None:
        if not keys:
            raise VaultKeyMissing()
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise VaultKeyInvalid(
                    f"key #{position} of {len(keys)} is not a Fernet key (32 url-safe base64 bytes); "
                    f"generate one with: {_GENERATE_KEY_COMMAND}"
                ) from None
        self._engine = engine
        self._key_count = len(fernets)
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_env(
        cls, engine: Engine, *, sandbox: bool, home: Path, environ: Mapping[str, str] | None = None
    ) -> Vault:
        """A vault keyed from ``ML_CONNECTOR_SECRET_KEY``; in the sandbox a generated key file stands in."""
        keys = _parse_keys((os.environ if environ is None else environ).get(SECRET_KEY_ENV, ""))
        if not keys:
            if not sandbox:
                raise VaultKeyMissing()
            keys = [_sandbox_key(Path(home))]
        return cls(engine, keys)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        # On SQLite a writer must take its lock at BEGIN (the ledger engine's BEGIN IMMEDIATE), so
        # busy_timeout queues it behind concurrent runs instead of failing with "database is locked".
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def put(self, name: str, value: str) -> None:
        """Store ``value`` under ``name``, replacing any previous value (one transaction)."""
        _check_name(name)
        ciphertext = self._encrypt(value)
        for _ in range(2):
            try:
                with self._writing() as conn:
                    if self._update(conn, name, ciphertext) == 0:
                        conn.execute(vault_entries.insert().values(
                            name=name, ciphertext=ciphertext, updated_at=_now()))
                return
            except IntegrityError:
                continue  # a concurrent put inserted the row first: the update path now applies
        raise RuntimeError(f"could not store vault entry {name!r}")

    def get(self, name: str) -> str | None:
        """The decrypted value stored under ``name``, or None."""
        with self._engine.connect() as conn:
            ciphertext = conn.execute(
                sa.select(vault_entries.c.ciphertext).where(vault_entries.c.name == name)
            ).scalar_one_or_none()
        return None if ciphertext is None else self._decrypt(name, ciphertext)

    def load(self, name: str) -> str | None:
        """TokenStore: same as :meth:`get`."""
        return self.get(name)

    def save(self, name: str, value: str) -> None:
        """TokenStore: same as :meth:`put`."""
        self.put(name, value)

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error when absent)."""
        with self._writing() as conn:
            conn.execute(vault_entries.delete().where(vault_entries.c.name == name))

    def names(self) -> list[str]:
        """The stored names, sorted (values stay encrypted)."""
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(vault_entries.c.name).order_by(vault_entries.c.name)).scalars())

    def compare_and_swap(self, name: str, expected: str | None, new: str) -> bool:
        """Store ``new`` only if the current value is ``expected`` (None: only if absent).

        Atomic without locks: the update is conditioned on the exact ciphertext that was read, so a
        concurrent writer makes it match no row and this returns False.
        """
        _check_name(name)
        ciphertext = self._encrypt(new)
        if expected is None:
            try:
                with self._writing() as conn:
                    conn.execute(vault_entries.insert().values(
                        name=name, ciphertext=ciphertext, updated_at=_now()))
            except IntegrityError:
                return False
            return True
        with self._writing() as conn:
            current = conn.execute(
                sa.select(vault_entries.c.ciphertext).where(vault_entries.c.name == name)
            ).scalar_one_or_none()
            if current is None or self._decrypt(name, current) != expected:
                return False
            return self._update(conn, name, ciphertext, only_if=current) == 1

    def rotate(self) -> int:
        """Re-encrypt every entry under the primary (first) key; return how many.

        All entries are decrypted before anything is written, in one transaction: an entry that no
        key can read aborts the rotation with nothing changed.
        """
        with self._writing() as conn:
            rows = conn.execute(sa.select(vault_entries.c.name, vault_entries.c.ciphertext)).all()
            rotated = []
            for name, ciphertext in rows:
                try:
                    rotated.append((name, ciphertext, self._fernet.rotate(ciphertext.encode()).decode()))
                except InvalidToken:
                    raise _unreadable(name) from None
            for name, old, new in rotated:
                self._update(conn, name, new, only_if=old)
        return len(rotated)

    def _encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def _decrypt(self, name: str, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise _unreadable(name) from None

    @staticmethod
    def _update(conn: sa.Connection, name: str, ciphertext: str, only_if: str | None = None) -> int:
        condition = vault_entries.c.name == name
        if only_if is not None:
            condition = sa.and_(condition, vault_entries.c.ciphertext == only_if)
        result = conn.execute(
            vault_entries.update().where(condition).values(ciphertext=ciphertext, updated_at=_now())
        )
        return result.rowcount

    def __repr__(self) -> str:
        # engine.url's repr masks a database password; the keys are never shown.
        return f"Vault(url={self._engine.url!r}, keys={self._key_count})"


@contextmanager
def opened_vault(db_url: str | None, *, sandbox: bool, home: Path) -> Iterator[Vault]:
    """The vault of the ledger database at ``db_url`` (None: the ledger's default), for the block."""
    ledger = Ledger.open(db_url)
    try:
        yield Vault.from_env(ledger.engine, sandbox=sandbox, home=home)
    finally:
        ledger.dispose()


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"vault entry names are 1-{MAX_NAME_LENGTH} characters, got {len(name)}")


def _unreadable(name: str) -> VaultEntryUnreadable:
    return VaultEntryUnreadable(
        f"vault entry {name!r} cannot be decrypted with the configured keys; was {SECRET_KEY_ENV} "
        "replaced without keeping the old key after the new one?"
    )


def _now() -> datetime:
    return datetime.now(UTC)
