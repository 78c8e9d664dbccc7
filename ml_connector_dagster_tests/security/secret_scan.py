"""Find secret values in whatever a run leaves behind: logs, event logs, ledgers, files at rest.

A :class:`SecretScanner` is built from named secrets (client secrets, tokens, webhook secrets,
refresh tokens, keys) and looks for each in text in every form a leak tends to take: the whole
value, its URL-encoded forms, its base64 forms (also inside a longer base64 string, such as a Basic
``client_id:client_secret`` credential), and a long enough prefix or suffix of it (a truncated
excerpt, a half-masked value). A :class:`Finding` names the secret and where it was found, never the
value, so a failing assertion does not leak the secret into the test report.

The collectors gather both sides: the secrets a sandbox run used (simulators' demo credentials and
issued tokens, the vault, the environment) and the texts the run produced (a Dagster instance's runs
and event logs, every table of the ledger, captured log records, files on disk). The chaos harness
calls the same functions.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import sqlalchemy as sa

__all__ = [
    "MIN_FRAGMENT",
    "Finding",
    "LogCollector",
    "Secret",
    "SecretScanner",
    "assert_no_secrets",
    "file_texts",
    "instance_texts",
    "is_secret_name",
    "log_record_text",
    "secrets_from_credentials",
    "secrets_from_environ",
    "secrets_from_sandbox",
    "secrets_from_simulator",
    "secrets_from_vault",
    "table_texts",
]

# The shortest fragment looked for: shorter pieces of a secret occur in ordinary text by chance.
MIN_FRAGMENT = 8
# Credential keys that name identifiers, not secrets (matched whole, lower case).
_PUBLIC_KEYS = frozenset({"client_id", "tenant_id", "company_id", "username", "email", "scope", "redirect_uri",
                          "workspace_gid", "user_id", "api_version", "cxml_sender_identity",
                          "cxml_buyer_identity", "header_name"})  # fmt: skip
_SECRET_KEY = re.compile(r"secret|token|password|passwd|(^|_)pat(_|$)|key|signature|credential|header_value")


def is_secret_name(name: str) -> bool:
    """True when a credential or variable named ``name`` holds a secret rather than an identifier."""
    lowered = name.lower()
    return lowered not in _PUBLIC_KEYS and bool(_SECRET_KEY.search(lowered))


@dataclass(frozen=True)
class Secret:
    """One secret value and a name for it (``visma.client_secret``); the repr never shows the value."""

    name: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Finding:
    """A secret (by name) found in one text, in one form; ``context`` has the secret masked."""

    secret: str
    form: str
    where: str
    context: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.where}: ...{self.context}..."


def _base64_fragments(value: bytes) -> set[str]:
    """Base64 text that appears wherever ``value`` is encoded, at any byte offset of a longer input."""
    fragments: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value).decode()
        # Characters that mix in the unknown bytes before (the shift) or after (the last partial group).
        start = (shift * 8 + 5) // 6
        end = ((shift + len(value)) * 8) // 6
        core = encoded[start:end]
        if len(core) >= MIN_FRAGMENT:
            fragments.update({core, core.translate(str.maketrans("+/", "-_"))})
    return fragments


_FORMS = ("value", "url-encoded", "json-escaped", "base64", "prefix", "suffix")


class SecretScanner:
    """Looks for every form of every secret given; fragments shorter than ``min_fragment`` are ignored."""

    def __init__(self, secrets: Iterable[Secret], *, min_fragment: int = MIN_FRAGMENT) -> None:
        self._patterns: dict[str, tuple[str, str]] = {}
        self.secrets = sorted({s for s in secrets if s.value}, key=lambda s: s.name)
        for secret in self.secrets:
            for form, text in self._forms(secret.value, min_fragment):
                if len(text) >= min_fragment:
                    # One name per pattern: the first (sorted) secret claims a value shared by several.
                    self._patterns.setdefault(text, (secret.name, form))
        # Most telling form first: a whole value also contains its prefix, which is then not reported.
        self._patterns = dict(sorted(self._patterns.items(), key=lambda item: _FORMS.index(item[1][1])))
        self._masker: re.Pattern[str] | None = None

    @staticmethod
    def _forms(value: str, min_fragment: int) -> Iterator[tuple[str, str]]:
        yield "value", value
        yield "url-encoded", quote(value, safe="")
        yield "url-encoded", quote_plus(value)
        yield "json-escaped", json.dumps(value)[1:-1]
        for fragment in _base64_fragments(value.encode()):
            yield "base64", fragment
        # A truncated or half-masked copy: half the value, and never less than ``min_fragment``.
        part = max(min_fragment, len(value) // 2)
        if part < len(value):
            yield "prefix", value[:part]
            yield "suffix", value[-part:]

    def __len__(self) -> int:
        return len(self.secrets)

    def scan(self, text: str, where: str) -> list[Finding]:
        """The secrets found in ``text``, each once, in the most telling form found."""
        findings: dict[str, Finding] = {}
        if not text:
            return []
        # One substring search per pattern: far faster than one regex alternation over megabytes.
        for pattern, (name, form) in self._patterns.items():
            start = text.find(pattern)
            if start < 0 or name in findings:
                continue
            end = start + len(pattern)
            context = f"{text[max(0, start - 40) : start]}<{name}>{text[end : end + 40]}"
            findings[name] = Finding(name, form, where, self.mask(context))
        return list(findings.values())

    def scan_all(self, texts: Iterable[tuple[str, str]]) -> list[Finding]:
        """Scan ``(where, text)`` pairs."""
        return [finding for where, text in texts for finding in self.scan(text, where)]

    def mask(self, text: str) -> str:
        """``text`` with every secret form replaced by ``***`` (safe to print)."""
        if not self._patterns:
            return text
        if self._masker is None:
            self._masker = re.compile(
                "|".join(re.escape(p) for p in sorted(self._patterns, key=len, reverse=True))
            )
        return self._masker.sub("***", text)


def assert_no_secrets(
    scanner: SecretScanner, texts: Iterable[tuple[str, str]], what: str = "the run's output"
) -> int:
    """Fail, naming each secret and place (never a value), if any text holds a secret; return texts scanned."""
    assert len(scanner) > 0, "no secrets to look for: the scan would prove nothing"
    collected = list(texts)
    findings = scanner.scan_all(collected)
    if findings:
        lines = "\n".join(f"  {finding}" for finding in findings[:50])
        raise AssertionError(f"{len(findings)} secret(s) found in {what}:\n{lines}")
    return len(collected)


# --- where the secrets come from ------------------------------------------------------------------


def secrets_from_credentials(system: str, credentials: Mapping[str, Any]) -> list[Secret]:
    """The secret-named string entries of a credentials mapping (``/_sandbox/credentials``)."""
    return [Secret(f"{system}.{key}", value) for key, value in credentials.items()
            if isinstance(value, str) and value and is_secret_name(key)]  # fmt: skip


def secrets_from_sandbox(system: str, base_url: str) -> list[Secret]:
    """The demo secrets a served (or any reachable) simulator shows at ``/_sandbox/credentials``."""
    response = httpx.get(f"{base_url.rstrip('/')}/_sandbox/credentials", timeout=10)
    response.raise_for_status()
    return secrets_from_credentials(system, response.json())


def secrets_from_simulator(simulator: Any) -> list[Secret]:
    """A simulator's demo credentials and every token it issued (access, refresh, webhook ...)."""
    found = secrets_from_credentials(simulator.name, simulator.credentials())
    with simulator.lock:
        issued = list(simulator.tokens.values())
        known = list(simulator.secret_values())
    found += [Secret(f"{simulator.name}.issued_{token.kind}_token", token.value) for token in issued]
    found += [Secret(f"{simulator.name}.secret", value) for value in known if isinstance(value, str)]
    return found


def secrets_from_vault(vault: Any) -> list[Secret]:
    """Every value the vault holds, decrypted."""
    return [Secret(f"vault:{name}", value) for name in vault.names() if (value := vault.get(name))]


def secrets_from_environ(environ: Mapping[str, str], names: Iterable[str] | None = None) -> list[Secret]:
    """Variables holding secrets (by their names, or the ``names`` given); comma-separated lists split."""
    chosen = names if names is not None else [name for name in environ if is_secret_name(name)]
    found = []
    for name in chosen:
        value = environ.get(name, "")
        parts = [part.strip() for part in value.split(",")] if "," in value else [value]
        found += [Secret(f"${name}", part) for part in parts if part]
    return found


# --- where a run leaves text ----------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def instance_texts(instance: Any) -> Iterator[tuple[str, str]]:
    """Every run of a Dagster instance (config, tags) and every event of its log, serialized whole.

    Events are serialized with Dagster's own serdes, as stored: messages, step failures with their
    exception chain and stack, materialization and check metadata, engine events, log lines.
    """
    from dagster._serdes import serialize_value

    for run in instance.get_runs():
        yield f"run {run.run_id} config", _json(run.run_config)
        yield f"run {run.run_id} tags", _json(dict(run.tags))
        for event in instance.all_logs(run.run_id):
            where = f"run {run.run_id} event {event.dagster_event_type or 'log'} ({event.step_key or '-'})"
            yield where, serialize_value(event)


def table_texts(engine: sa.Engine) -> Iterator[tuple[str, str]]:
    """Every row of every table in a database (the ledger: links, dead letters, inbox, state, vault ...)."""
    reflected = sa.MetaData()
    reflected.reflect(engine)
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            for number, row in enumerate(conn.execute(sa.select(table))):
                yield f"table {table.name} row {number}", _json(dict(row._mapping))


def file_texts(root: Path, *, exclude: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """The raw bytes of every file under ``root`` (databases, compute logs ...) as text.

    ``exclude``: file names skipped (a key file, say: where the key is meant to be).
    """
    skipped = set(exclude)
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name not in skipped):
        yield f"file {path}", path.read_bytes().decode("latin-1")


def log_record_text(record: logging.LogRecord) -> str:
    """A log record as any handler could render it: message, arguments, exception and stack."""
    formatter = logging.Formatter()
    parts = [record.getMessage()]
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}
    if extra:
        parts.append(_json(extra))
    return "\n".join(parts)


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class LogCollector(logging.Handler):
    """A handler keeping the rendered text of every record it sees (install at the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append((f"log {record.name} {record.levelname}", log_record_text(record)))
        except Exception:  # noqa: BLE001 - a record that cannot render is kept as what it is
            self.texts.append((f"log {record.name} {record.levelname}", repr(vars(record))))
