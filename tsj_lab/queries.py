"""Named SQL statements loaded from ``sql/*.sql``, in the style of aiosql.

Each statement starts with ``-- name: <name>``; the comment lines right under it document
it. A statement is addressed by its file and name, ``"<file>.<name>"`` (``"migrate.copy_in"``
is ``-- name: copy_in`` in ``sql/migrate.sql``), so names need only be unique in a file.
Values are passed as psycopg parameters (``%(x)s``); identifiers are written as ``{table}``
and composed with :class:`psycopg.sql.Identifier` by :func:`compose`, which also fills a
``{part}`` with a literal or another block where DDL takes no parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from psycopg import sql

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


@dataclass(frozen=True)
class Query:
    name: str
    text: str
    doc: str
    file: str
    line: int

    @property
    def code(self) -> str:
        """The statement without the comment lines that document it."""
        lines = self.text.splitlines()
        while lines and lines[0].startswith("--"):
            lines.pop(0)
        return "\n".join(lines)


@cache
def _load_all(sql_dir: Path = SQL_DIR) -> dict[str, Query]:
    found: dict[str, Query] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        found.update({f"{path.stem}.{name}": q for name, q in _parse(path).items()})
    return found


def _parse(path: Path) -> dict[str, Query]:
    out: dict[str, Query] = {}
    name, start = None, 0
    body: list[str] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = _NAME.match(line)
        if m:
            if name:
                out[name] = _finish(name, body, path, start)
            name, start, body = m.group(1), lineno, []
            if name in out:
                raise ValueError(f"{path.name}:{lineno}: duplicate query name '{name}'")
        elif name:
            body.append(line)
    if name:
        out[name] = _finish(name, body, path, start)
    return out


def _finish(name: str, body: list[str], path: Path, line: int) -> Query:
    doc_lines = []
    for raw in body:
        if not raw.startswith("--"):
            break
        doc_lines.append(raw.lstrip("-").strip())
    text = "\n".join(body).strip()
    code = "\n".join(b for b in body if not b.strip().startswith("--")).strip()
    if not code:
        raise ValueError(f"{path.name}:{line}: query '{name}' is empty")
    return Query(f"{path.stem}.{name}", text, " ".join(doc_lines), path.name, line)


def get(name: str) -> Query:
    """The query called ``name`` (``"<file>.<name>"``); unknown names fail at once."""
    queries = _load_all()
    if name not in queries:
        raise KeyError(f"no query named '{name}' in {SQL_DIR}/*.sql")
    return queries[name]


def text(name: str) -> str:
    return get(name).text


def compose(name: str, **parts: str | sql.Composable) -> sql.Composed | sql.SQL:
    """The query with its ``{placeholders}`` filled: a string is a quoted identifier, a
    :class:`psycopg.sql.Composable` (a ``Literal``, another block) goes in as it is."""
    q = sql.SQL(get(name).code)  # from our own files; the docs may name {placeholders}
    if not parts:
        return q
    return q.format(**{k: v if isinstance(v, sql.Composable) else sql.Identifier(v)
                       for k, v in parts.items()})


def names() -> list[str]:
    return sorted(_load_all())
