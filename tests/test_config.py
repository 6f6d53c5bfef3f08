from __future__ import annotations

from pathlib import Path

import pytest

from tsj_lab.config import Settings, redact, validate_url, with_database
from tsj_lab.errors import ConfigError


def test_redact_url_and_conninfo() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("failed: host=h password=s3cret user=u") == "failed: host=h password=*** user=u"
    assert "s3cret" not in redact("postgres+psycopg://u:s3cret@h/db and postgresql://v:x@y/z")


def test_settings_repr_has_no_password() -> None:
    s = Settings.load(env={"TSJ_DATABASE_URL": "postgresql://u:s3cret@h/db"}, dotenv=None)
    assert s.target_url == "postgresql://u:s3cret@h/db"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert "u:***@h" in repr(s)


def test_story_variable_is_accepted_and_tsj_wins() -> None:
    env = {"TIMESCALE_DATABASE_URL": "postgresql://a@h/story"}
    assert Settings.load(env=env, dotenv=None).target_url.endswith("/story")
    env["TSJ_DATABASE_URL"] = "postgresql://a@h/tsj"
    assert Settings.load(env=env, dotenv=None).target_url.endswith("/tsj")


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("TSJ_SOURCE_URL=postgresql://a@h/from_file\nTSJ_POOL_MAX=7\n")
    s = Settings.load(env={}, dotenv=f)
    assert s.source_url.endswith("/from_file") and s.pool_max == 7
    s = Settings.load(env={"TSJ_POOL_MAX": "9"}, dotenv=f)
    assert s.pool_max == 9


@pytest.mark.parametrize("url", ["mysql://a@h/db", "not a url", "postgresql://a:pw@h:99999/db"])
def test_bad_urls_fail_in_one_line_without_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_url(url)
    assert "\n" not in str(err.value) and "pw@" not in str(err.value)


def test_bad_pool_sizes_fail_up_front() -> None:
    with pytest.raises(ValueError, match="min=5 max=2"):
        Settings(pool_min=5, pool_max=2)
    with pytest.raises(ConfigError, match="TSJ_POOL_MAX"):
        Settings.load(env={"TSJ_POOL_MAX": "lots"}, dotenv=None)


def test_with_database_keeps_options() -> None:
    assert with_database("postgresql://u@h:1/a?passfile=/p", "b") == "postgresql://u@h:1/b?passfile=/p"
