"""connector.yaml, broken every way a hand-edited file breaks: a config, or a ConfigError naming the field.

Structure (a field deleted or given junk, at any depth of the shipped configs) and text (bytes
spliced into the YAML, a file that is not UTF-8, an alias bomb) are both fuzzed through the public
entry points, ``parse_config`` and ``load_config``. Never another exception type.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import (
    SANDBOX_CONFIG_PATH,
    ConfigError,
    ConnectorConfig,
    load_config,
    parse_config,
)

from .mutations import mutated, names_the_place

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "sandbox": yaml.safe_load(SANDBOX_CONFIG_PATH.read_text()),
    "example": yaml.safe_load((PROJECT_ROOT / "connector.example.yaml").read_text()),
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_shipped_configs_are_valid_to_start_from() -> None:
    for name, data in SHIPPED.items():
        assert isinstance(parse_config(data, name), ConnectorConfig)


@FUZZ
@given(data=st.data())
def test_a_broken_field_is_refused_by_its_name_or_the_config_still_holds(data: st.DataObject) -> None:
    broken, mutation = data.draw(mutated(list(SHIPPED.values())), label="config")
    try:
        parse_config(broken, "connector.yaml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("connector.yaml"), message
        if mutation.kind != "whole":
            assert names_the_place(message, mutation), f"{mutation}: {message}"


def _spliced(text: str) -> st.SearchStrategy[str]:
    index = st.integers(0, len(text))
    return st.one_of(
        st.tuples(index, st.sampled_from(["\t", ":", "- ", "{", "[", "'", '"', "&a ", "*a", "!!python/object:os.system",
                                          "\x00", "\ufeff", "%YAML 9.9\n", "---\n", "? ", "|\n", "\n  x"])).map(
            lambda p: text[: p[0]] + p[1] + text[p[0] :]
        ),
        index.map(lambda i: text[:i]),
        st.tuples(index, st.text(max_size=8)).map(lambda p: text[: p[0]] + p[1] + text[p[0] :]),
    )  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_spliced(SANDBOX_CONFIG_PATH.read_text()))
def test_a_mangled_file_loads_or_fails_with_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("config") / "connector.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as error:
        assert str(path) in str(error) or "connector.yaml" in str(error)


def test_a_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "connector.yaml"
    path.write_bytes(SANDBOX_CONFIG_PATH.read_bytes().replace(b"sandbox:", "sandbøx:".encode("latin-1"), 1))
    with pytest.raises(ConfigError, match="UTF-8") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_a_directory_in_place_of_the_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "connector.yaml"
    path.write_text("\n".join(lines) + "\nsystems:\n  visma: *a8\n")
    started = time.monotonic()
    with pytest.raises(ConfigError):
        load_config(path)
    assert time.monotonic() - started < 5


def test_a_deeply_nested_file_is_a_config_error_not_a_recursion_crash(tmp_path: Path) -> None:
    path = tmp_path / "connector.yaml"
    path.write_text("systems: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"systems": {"visma": {"base_url": "ftp://x", "token_url": "http://x"}}}, "systems.visma.base_url"),
        ({"systems": {"visma": {"base_url": "http://x", "token_url": "http://x", "rate_per_s": "fast"}}},
         "systems.visma.rate_per_s"),
        ({"systems": {"jira": {"base_url": "http://x", "auth_url": "http://x", "auth": "kerberos"}}},
         "systems.jira.auth"),
        ({"systems": {"visma": None}, "sandbox": {"size": 10**12}}, "sandbox.size"),
    ],
)  # fmt: skip
def test_the_message_gives_the_dotted_path_of_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(data)
