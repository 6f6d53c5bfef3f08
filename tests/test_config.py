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


@pytest.mark.parametrize("url", ["mysql://a:pw@h/db", "not a url", "postgresql://a:pw@h:99999/db",
                                 "not a url at all pw@", "postgresql://a:p w@h:99999/db",
                                 "host=h password='pw@ unterminated", "dbname=x password=pw@"])
def test_bad_urls_fail_in_one_line_without_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_url(url)
    assert "\n" not in str(err.value) and "pw" not in str(err.value)


def test_an_unparseable_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env={"TSJ_DATABASE_URL": "not a url at all <secret>"}, dotenv=None)
    assert "<secret>" not in str(err.value) and "25-character" in str(err.value)
    assert "postgresql://USER@HOST" in str(err.value)


def test_libpq_key_value_strings_become_urls() -> None:
    conninfo = "host=db.example.com port=6543 dbname=postgres user=me password='s3 cret' sslmode=require"
    s = Settings.load(env={"TSJ_DATABASE_URL": conninfo}, dotenv=None)
    assert s.target_url == "postgresql://me:s3%20cret@db.example.com:6543/postgres?sslmode=require"
    assert "s3" not in repr(s) and "me:***@db.example.com:6543" in repr(s)
    sock = validate_url("host=/run/postgresql dbname=tsj user=u")
    assert sock == "postgresql://u@/tsj?host=%2Frun%2Fpostgresql"
    assert validate_url(sock) == sock  # a socket URL is a URL too


def test_key_value_urls_connect(server: object, target_url: str) -> None:
    """The converted URL reaches the same server as psycopg's own reading of the conninfo."""
    from psycopg.conninfo import conninfo_to_dict

    from tsj_lab.db.connections import resolve_url
    from tsj_lab.db import probe_url

    kv = " ".join(f"{k}={v}" for k, v in conninfo_to_dict(target_url).items())
    assert "port=" in kv and "://" not in kv
    assert probe_url(resolve_url(kv, settings=Settings.load())).timescaledb_version is not None


def test_bad_pool_sizes_fail_up_front() -> None:
    with pytest.raises(ValueError, match="min=5 max=2"):
        Settings(pool_min=5, pool_max=2)
    with pytest.raises(ConfigError, match="TSJ_POOL_MAX"):
        Settings.load(env={"TSJ_POOL_MAX": "lots"}, dotenv=None)


def test_with_database_keeps_options() -> None:
    assert with_database("postgresql://u@h:1/a?passfile=/p", "b") == "postgresql://u@h:1/b?passfile=/p"
