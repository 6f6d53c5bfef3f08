"""Named SQL: every file parses, names are unique, and every name the code uses exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tsj_lab import queries
from tsj_lab.domain import TICK_COLUMNS

PACKAGE = Path(queries.__file__).parent
# queries.text("x"), queries.compose("x", ...), queries.get("x"), read_frame(url, "x", ...)
_USES = re.compile(
    r"""(?:queries\.(?:text|compose|get)\(\s*|read_frame\([^,()]+,\s*)["']([a-z_0-9.]+)["']"""
)


def test_every_sql_file_loads_with_documented_statements() -> None:
    names = queries.names()
    assert len(names) > 50
    for name in names:
        q = queries.get(name)
        assert q.doc, f"{q.file}:{q.line}: '{name}' has no comment under its name"


def test_every_name_the_code_uses_exists() -> None:
    used = {m.group(1) for p in PACKAGE.rglob("*.py") for m in _USES.finditer(p.read_text())}
    assert len(used) > 30  # the scan found the calls: it cannot pass by finding nothing
    assert sorted(used - set(queries.names())) == []


def test_every_block_is_used_by_the_package() -> None:
    """A block no code names is dead SQL: its name appears in the package as a string,
    whole, or as the literal part of an f-string (f"schema_timescale.enable_{api}")."""
    whole, prefixes = set(), set()
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                whole.add(node.value)
            elif isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
                prefixes.add(str(node.values[0].value))
    unused = [n for n in queries.names()
              if n not in whole and not any(n.startswith(p) for p in prefixes if "." in p)]
    assert unused == []


def test_names_are_the_file_and_the_name_in_it() -> None:
    for name in queries.names():
        q = queries.get(name)
        stem, _, own = name.partition(".")
        assert q.file == f"{stem}.sql" and own and "." not in own
        # no file-named prefixes left (namespacing by file replaced 'mig_', 'chk_', ...)
        assert not own.startswith(("mig_", "chk_", "gen_", "hist_", "ts_")), name
    # the same name in two files is two queries
    assert queries.get("checks.jobs").text != queries.get("policies.jobs").text


def test_unknown_name_fails_at_once() -> None:
    with pytest.raises(KeyError, match="no query named 'nope'"):
        queries.get("nope")


def test_duplicate_and_empty_names_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")
    with pytest.raises(ValueError, match=r"a.sql:3: duplicate query name 'one'"):
        queries._load_all(tmp_path)
    two = tmp_path / "two"  # (_load_all is cached by directory)
    two.mkdir()
    (two / "b.sql").write_text("-- name: one\nSELECT 3;\n")
    (two / "a.sql").write_text("-- name: one\nSELECT 1;\n")
    assert sorted(queries._load_all(two)) == ["a.one", "b.one"]
    (tmp_path / "a.sql").write_text("-- name: empty\n-- only a comment\n")
    with pytest.raises(ValueError, match=r"a.sql:1: query 'empty' is empty"):
        queries._load_all(tmp_path)


def test_compose_quotes_identifiers() -> None:
    stmt = queries.compose("ingest.count", table='odd"name')
    assert 'FROM "odd""name"' in stmt.as_string(None)


def _columns(name: str) -> list[tuple[str, str]]:
    """(column, type) of a CREATE TABLE block, constraints left out."""
    pglast = pytest.importorskip("pglast")
    text = queries.text(name).replace("{table}", "t")
    (raw,) = pglast.parse_sql(text)
    cols = []
    for elt in raw.stmt.tableElts:
        if type(elt).__name__ == "ColumnDef":
            typ = ".".join(n.sval for n in elt.typeName.names if n.sval != "pg_catalog")
            mods = ",".join(str(m.val.ival) for m in elt.typeName.typmods or ())
            cols.append((elt.colname, f"{typ}({mods})" if mods else typ))
    return cols


def test_quarantine_holds_the_tick_columns_in_step_with_the_tick_table() -> None:
    ticks = _columns("schema.create_tick_table")
    assert [c for c, _ in ticks] == list(TICK_COLUMNS)
    quarantine = _columns("migrate.create_quarantine")
    # the tick columns first, the same types (without NOT NULL: odd rows land there),
    # then the quarantine's own
    assert quarantine[:len(ticks)] == ticks
    assert [c for c, _ in quarantine[len(ticks):]] == ["reason", "plan_key", "batch_id",
                                                        "quarantined_at"]
