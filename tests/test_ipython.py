"""The kernel extension: %%sql on 'target'/'source' in every kernel, names only, capped.

In-process tests use an IPython shell with the extension; the kernel tests start real
kernels of this environment (nbclient, papermill through tsj_lab.lab.reports) with nothing
loaded by hand, which is what JupyterLab, papermill and nbval do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from sql.connection import ConnectionManager

from tsj_lab.lab import ipython, reports
from tsj_lab.config import PROJECT_DIR, Settings
from tsj_lab.server.cluster import Embedded
from tsj_lab.errors import ReportError


@pytest.fixture
def magic(server: Embedded):  # type: ignore[no-untyped-def]
    m = ipython.sql_magic()
    yield m
    m.autolimit = ipython.SETTINGS["autolimit"]


def test_connections_are_names_and_target_is_current(magic) -> None:  # type: ignore[no-untyped-def]
    table = str(ConnectionManager.connections_table())
    assert re.findall(r"\|\s*\*?\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|", table) == [
        ("source", "source"), ("target", "target")]
    assert ConnectionManager.current is ConnectionManager.connections["target"]
    assert "://" not in table and "127.0.0.1" not in table and "passfile" not in table


def test_sql_cell_binds_and_returns_a_dataframe(magic) -> None:  # type: ignore[no-untyped-def]
    df = ipython.run_cell("SELECT current_database() AS db, :symbol AS s, "
                          "CAST(:n AS int) + 1 AS n", {"symbol": "ES'--", "n": 41})
    assert isinstance(df, pd.DataFrame)
    assert df.to_dict("records") == [{"db": "tsj", "s": "ES'--", "n": 42}]
    src = ipython.run_cell("SELECT current_database() AS db", connection="source")
    assert src["db"][0] == "tsj_source"
    # sent as written: sqlglot would have made this ORDER BY 1 NULLS FIRST
    got = ipython.run_cell("SELECT x FROM (VALUES (2), (NULL), (1)) v(x) ORDER BY 1")
    assert got["x"].isna().tolist() == [False, False, True]


def test_big_results_stop_at_the_cap_and_say_so(magic, capsys) -> None:  # type: ignore[no-untyped-def]
    magic.autolimit = 1_000
    df = ipython.run_cell("SELECT g FROM generate_series(1, 5000000) g")
    assert len(df) == 1_000 and df["g"].iloc[-1] == 1_000
    said = capsys.readouterr()
    assert "The result has more than 1,000 rows; %%sql kept the first 1,000" in said.out
    assert "tsj_lab.lab.adhoc.read(" in said.out and not said.err  # a note, not an error
    exact = ipython.run_cell("SELECT g FROM generate_series(1, 1000) g")
    assert len(exact) == 1_000 and "more than" not in capsys.readouterr().out
    # statements that return no rows still run (and commit)
    ipython.run_cell("CREATE TEMP TABLE IF NOT EXISTS adhoc_t (x int)")


def test_bad_sql_is_postgresqls_one_line(magic) -> None:  # type: ignore[no-untyped-def]
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as err:
        ipython.run_cell("SELECT * FROM no_such_table WHERE symbol = :symbol", {"symbol": "ES"})
    assert str(err.value) == "relation \"no_such_table\" does not exist (on 'target')"
    with pytest.raises(UsageError, match=r"^Cannot execute query because the following "
                                         r"variables are undefined: symbol$"):  # JupySQL's
        ipython.run_cell("SELECT :symbol")


def test_a_wrong_connection_name_lists_the_right_ones(magic) -> None:  # type: ignore[no-untyped-def]
    from IPython.core.error import UsageError

    for bad in ("nosuchconn", "tagret"):
        with pytest.raises(UsageError) as err:
            ipython.run_cell("SELECT 1", connection=bad)
        assert str(err.value) == (f"no connection {bad!r}; the connections are 'source', "
                                  "'target' (e.g. %%sql target)")
    # a first word that starts SQL, or names a variable (an engine), is not a connection name
    for line in ("SELECT", "with", "VACUUM", "--connections"):
        ipython.check_connection(magic, line, {})
    ipython.check_connection(magic, "my_engine", {"my_engine": object()})


def test_a_refused_connection_is_one_line_without_url(magic, server: Embedded,
                                                       target_url: str) -> None:  # type: ignore[no-untyped-def]
    from IPython.core.error import UsageError

    from tsj_lab.db import engine

    bad = target_url.replace("tsj@", "tsj:Wr0ngSecret@", 1).split("?", 1)[0]
    with ipython.connection(engine(bad), "elsewhere") as alias, pytest.raises(UsageError) as err:
        ipython.run_cell("SELECT 1", connection=alias)
    assert str(err.value) == ("cannot connect to 'elsewhere': the password was refused; "
                              "check the password in the URL or passfile")
    assert ConnectionManager.current is ConnectionManager.connections["target"]  # unchanged
    assert "elsewhere" not in ConnectionManager.connections


def _kernel_run(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, allow_errors=True).execute()
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    return json.dumps(cell.outputs)


def test_every_kernel_has_target_and_source_and_one_line_errors(server: Embedded) -> None:
    assert ipython.config_path().is_file(), "run 'make setup' (python -m tsj_lab.lab.ipython install)"
    nb = _kernel_run("%%sql target\nSELECT current_database() AS db",
                     "assert _['db'][0] == 'tsj', _\nprint(sorted(engines))",
                     "%%sql source\nSELECT current_database() AS db",
                     "%%sql target\nSELEC 1",
                     "%sql --connections",
                     "%%sql nosuchconn\nSELECT 1",
                     "%config SqlMagic.autolimit = 3\n",
                     "%%sql target\nSELECT g FROM generate_series(1, 10) g",
                     "%%sql target\nSELECT 4297.25::numeric(20, 8) AS last_price")
    ok, names, source, bad, listing, wrong, _, capped, numeric = nb.cells
    assert "tsj" in _text(ok) and "error" not in _text(ok)
    assert names.outputs[0]["text"] == "['source', 'target']\n"
    assert "tsj_source" in _text(source)
    switching, error = bad.outputs  # JupySQL names the connection it switches to
    assert switching.data["text/plain"] == "Switching to connection 'target'"
    assert (error.output_type, error.ename) == ("error", "SQLError")
    assert error.evalue == "syntax error at or near \"SELEC\" (on 'target')"
    assert error.traceback == [f"SQLError: {error.evalue}"]  # the one line, no stack
    for cell in nb.cells:
        assert "://" not in _text(cell) and "passfile" not in _text(cell), _text(cell)
    assert re.search(r"\|\s+\*\s+\|\s+target\s+\|\s+target\s+\|", _text(listing))
    (error,) = wrong.outputs
    assert error.evalue == ("no connection 'nosuchconn'; the connections are 'source', "
                            "'target' (e.g. %%sql target)")
    assert error.traceback == [f"UsageError: {error.evalue}"]
    # the cap's note is a note (display data, as JupySQL's own), not the stderr of an error
    note = next(o for o in capped.outputs if "more than 3 rows" in json.dumps(o))
    assert note.output_type == "display_data" and "<span" in note.data["text/html"]
    assert not [o for o in capped.outputs if o.get("name") == "stderr"]
    # NUMERIC(20,8) shows the decimals it needs, not 4297.25000000
    html = next(o.data["text/html"] for o in numeric.outputs if "text/html" in o.get("data", {}))
    assert "<td>4,297.25</td>" in html and "4297.25000000" not in html


def test_a_report_names_the_failing_sql(tmp_path: Path, server: Embedded) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('target = "target"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("%%sql target\nSELECT * FROM tick_datta"),
        nbformat.v4.new_code_cell("print('never reached')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(tmp_path / "bad_sql.ipynb"))
    with pytest.raises(ReportError, match=r"failed in cell 2: SQLError: relation "
                                                  r"\"tick_datta\" does not exist \(on 'target'\)"):
        reports.run("bad_sql", settings=Settings.load(),
                    notebooks_dir=tmp_path, reports_dir=tmp_path / "reports")
    (summary,) = (tmp_path / "reports").glob("*/*-bad_sql.json")
    assert json.loads(summary.read_text())["error"] == {
        "cell": 2, "ename": "SQLError", "evalue": "relation \"tick_datta\" does not exist (on 'target')"}


def test_install_is_idempotent_and_keeps_other_settings(tmp_path: Path) -> None:
    path = ipython.config_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"InteractiveShellApp": {"extra_extensions": ["other"]},
                                "IPKernelApp": {"x": 1}}))
    assert ipython.install(tmp_path) == ipython.install(tmp_path) == path
    config = json.loads(path.read_text())
    assert config["InteractiveShellApp"]["extra_extensions"] == ["other", "tsj_lab.lab.ipython"]
    assert config["IPKernelApp"] == {"x": 1}


def _password(server: Embedded) -> str:
    return server.passfile.read_text().strip().rsplit(":", 1)[1]


@pytest.mark.slow
def test_a_report_of_the_sql_notebook_holds_no_password_or_url(
        tmp_path: Path, server: Embedded, target_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    password = _password(server)
    url = target_url.replace("tsj@", f"tsj:{password}@", 1).split("?", 1)[0]
    monkeypatch.setenv("TSJ_DATABASE_URL", url)
    run = reports.run("06_sql", settings=Settings.load(),
                      notebooks_dir=PROJECT_DIR / "notebooks", reports_dir=tmp_path)
    assert run.summary["status"] == "ok"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 4  # ipynb, html, json, index.html
    for path in files:
        assert password not in path.read_text(errors="replace"), f"password in {path.name}"
    # Not even scrubbed: no cell output names the server at all (scrubbing leaves '***').
    nb = nbformat.read(str(run.notebook), as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells])
    host = urlsplit(url).netloc.rsplit("@", 1)[1]  # 127.0.0.1:PORT
    for leak in ("postgresql:", "postgresql+", "postgres:", "tsj:***", "passfile", host):
        assert leak not in outputs, f"{leak!r} in the notebook's outputs"
    assert "Running query in" not in outputs or "Running query in 'target'" in outputs
    assert "The result has more than 1,000 rows" in outputs  # the cap's note shows
