"""connector.yaml: the shipped default loads; bad files fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "connector.example.yaml"


def _sandbox_data() -> dict:
    return yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())


def test_shipped_sandbox_config_loads_with_every_system_in_sandbox_mode() -> None:
    config = load_config(SANDBOX_CONFIG_PATH)
    assert config.system_mode("visma") == "sandbox"
    assert config.system_mode("jira") == "sandbox"


def test_example_config_loads_with_real_systems() -> None:
    assert load_config(EXAMPLE).system_mode("visma") == "real"


def test_env_var_chooses_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _sandbox_data()
    data["poll_interval_s"] = 77
    path = tmp_path / "connector.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ML_CONNECTOR_CONFIG", str(path))
    assert load_config().poll_interval_s == 77


def test_invalid_url_is_reported_with_its_field_path() -> None:
    data = _sandbox_data()
    data["systems"]["visma"]["base_url"] = "not a url"
    with pytest.raises(ConfigError, match=r"systems\.visma\.base_url"):
        parse_config(data)


def test_misspelt_key_is_refused_by_name() -> None:
    data = _sandbox_data()
    data["flows"]["visma_jira"]["projekt_key"] = "FIN"
    with pytest.raises(ConfigError, match=r"flows\.visma_jira\.projekt_key"):
        parse_config(data)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="connector.yaml"):
        load_config(tmp_path / "connector.yaml")


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "connector.yaml"
    path.write_text("systems: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_config_without_any_system_is_refused() -> None:
    with pytest.raises(ConfigError, match="no system is configured"):
        parse_config({"systems": {}})


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers())))
def test_non_mapping_top_level_is_refused_clearly(data: object) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)
