"""Specification of the secret scanner: every form a leak takes is found, and findings never show it."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster_tests.security.secret_scan import (
    LogCollector,
    Secret,
    SecretScanner,
    assert_no_secrets,
    file_texts,
    is_secret_name,
    secrets_from_credentials,
    secrets_from_environ,
    table_texts,
)

CLIENT_SECRET = "sandbox-visma-client-secret-not-for-production"
REFRESH = "2/1209100000000011/1209100000009000:324a1094ed70b6bdda995edb2013e9ca21490244"
SCANNER = SecretScanner(
    [Secret("visma.client_secret", CLIENT_SECRET), Secret("asana.refresh_token", REFRESH)]
)


def only_finding(text: str) -> tuple[str, str]:
    findings = SCANNER.scan(text, "here")
    assert findings, "nothing found"
    return findings[0].secret, findings[0].form


def test_the_value_itself_is_found() -> None:
    assert only_finding(f"error: {CLIENT_SECRET} refused") == ("visma.client_secret", "value")


def test_a_url_encoded_value_is_found() -> None:
    assert only_finding(f"POST /token?refresh_token={quote(REFRESH, safe='')}")[0] == "asana.refresh_token"
    assert only_finding(f"form: refresh_token={quote_plus(REFRESH)}")[0] == "asana.refresh_token"


def test_a_json_escaped_value_is_found() -> None:
    secret = Secret("odd", 'quote"and\\slash-value')
    assert SecretScanner([secret]).scan(json.dumps({"x": secret.value}), "json")


@pytest.mark.parametrize("prefix", ["", "a", "ab", "client-id:", "client-id-1:"])
def test_a_value_inside_a_longer_base64_string_is_found_at_any_offset(prefix: str) -> None:
    basic = base64.b64encode(f"{prefix}{CLIENT_SECRET}".encode()).decode()
    assert only_finding(f"Authorization: Basic {basic}") == ("visma.client_secret", "base64")


def test_a_urlsafe_base64_value_is_found() -> None:
    encoded = base64.urlsafe_b64encode(REFRESH.encode()).decode().rstrip("=")
    assert only_finding(encoded)[0] == "asana.refresh_token"


def test_a_truncated_or_half_masked_value_is_found() -> None:
    assert only_finding(f"detail: {CLIENT_SECRET[:30]}...")[1] == "prefix"
    assert only_finding(f"detail: ***{REFRESH[-45:]}")[1] == "suffix"


def test_a_fragment_shorter_than_half_the_secret_is_not_a_finding() -> None:
    assert SCANNER.scan("the sandbox-visma simulator answered", "log") == []


def test_a_finding_names_the_secret_but_never_shows_it() -> None:
    [finding] = SCANNER.scan(f"x {CLIENT_SECRET} y", "log line 3")
    assert finding.where == "log line 3"
    assert CLIENT_SECRET not in str(finding)
    assert "<visma.client_secret>" in finding.context


def test_assert_no_secrets_reports_names_and_places_only() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_no_secrets(SCANNER, [("log 1", "fine"), ("log 2", f"leak {REFRESH}")])
    message = str(caught.value)
    assert "asana.refresh_token" in message and "log 2" in message
    assert SCANNER.scan(message, "the failure message") == []


def test_assert_no_secrets_refuses_to_prove_anything_without_secrets() -> None:
    with pytest.raises(AssertionError, match="no secrets"):
        assert_no_secrets(SecretScanner([]), [("log", "text")])


@settings(max_examples=50, deadline=None)
@given(secret=st.text(min_size=8, max_size=60).filter(lambda s: s.strip()), before=st.text(max_size=20),
       after=st.text(max_size=20))  # fmt: skip
def test_any_secret_embedded_in_any_text_is_found_and_masked(secret: str, before: str, after: str) -> None:
    scanner = SecretScanner([Secret("s", secret)])
    text = f"{before}{secret}{after}"
    assert scanner.scan(text, "t")
    assert secret not in scanner.mask(text)


@pytest.mark.parametrize(
    ("name", "secret"),
    [("client_secret", True), ("refresh_token", True), ("password", True), ("pat", True), ("ASANA_PAT", True),
     ("push_header_value", True), ("ML_CONNECTOR_SECRET_KEY", True), ("client_id", False), ("tenant_id", False),
     ("username", False), ("email", False), ("PATH", False), ("workspace_gid", False), ("pat_env", True)],
)  # fmt: skip
def test_credential_names_tell_secrets_from_identifiers(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_credentials_keep_only_their_secret_entries() -> None:
    found = secrets_from_credentials(
        "jira", {"client_id": "abc", "client_secret": "s3cret-123", "port": 8804}
    )
    assert [secret.name for secret in found] == ["jira.client_secret"]


def test_an_environment_variable_with_rotating_secrets_gives_each_one() -> None:
    found = secrets_from_environ(
        {"VISMA_WEBHOOK_SECRET": "new-secret-1, old-secret-0"}, ["VISMA_WEBHOOK_SECRET"]
    )
    assert [secret.value for secret in found] == ["new-secret-1", "old-secret-0"]


def test_the_secret_repr_never_shows_the_value() -> None:
    assert CLIENT_SECRET not in repr(Secret("visma.client_secret", CLIENT_SECRET))


def test_every_row_of_every_table_is_read(tmp_path) -> None:  # noqa: ANN001
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("create table notes (body text)"))
        conn.execute(sa.text("insert into notes values (:body)"), {"body": f"leak {CLIENT_SECRET}"})
    texts = list(table_texts(engine))
    engine.dispose()
    assert [where for where, _ in texts] == ["table notes row 0"]
    assert SCANNER.scan_all(texts)


def test_files_at_rest_are_read_raw_except_the_excluded(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compute.log").write_bytes(b"\x00\xffbinary " + REFRESH.encode())
    (tmp_path / "sandbox.key").write_text(CLIENT_SECRET)
    texts = list(file_texts(tmp_path, exclude=["sandbox.key"]))
    assert len(texts) == 1
    assert SCANNER.scan_all(texts)[0].secret == "asana.refresh_token"


def test_the_log_collector_renders_arguments_exceptions_and_extras() -> None:
    collector = LogCollector()
    logger = logging.getLogger("secret_scan_test")
    logger.addHandler(collector)
    try:
        logger.warning("token %s", "arg-leak-1234567890")
        try:
            raise RuntimeError("exception-leak-1234567890")
        except RuntimeError:
            logger.exception("failed")
        logger.error("plain", extra={"detail": "extra-leak-1234567890"})
    finally:
        logger.removeHandler(collector)
    rendered = "\n".join(text for _, text in collector.texts)
    for leak in ("arg-leak-1234567890", "exception-leak-1234567890", "extra-leak-1234567890"):
        assert leak in rendered
