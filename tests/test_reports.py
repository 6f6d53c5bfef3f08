"""Reports: a run's three files, a failing notebook, the index, secrets, the browser view,
and the kernel's connection settings.

The notebooks run here are small fixtures in tests/notebooks/, so these tests do not
depend on the other phases. One successful run is shared by the module (a run costs a
kernel start, a few seconds on two cores).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from browser import rendered_dom

from tsj_lab.lab import environment, html, recording, reports
from tsj_lab.cli import main
from tsj_lab.config import CONNECTION_NAMES, Settings, redact
from tsj_lab.server.cluster import Embedded
from tsj_lab.errors import ConfigError, ReportError

FIXTURES = Path(__file__).parent / "notebooks"


@pytest.fixture(scope="module")
def ok_run(tmp_path_factory: pytest.TempPathFactory, server: Embedded) -> reports.Report:
    out = tmp_path_factory.mktemp("reports")
    return reports.run("ok", settings=Settings.load(),
                       parameters={"n": 4}, notebooks_dir=FIXTURES, reports_dir=out)


def test_successful_run_writes_notebook_html_and_json(ok_run: reports.Report) -> None:
    folder = ok_run.html.parent
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", folder.name)
    assert re.fullmatch(r"\d{6}-ok", ok_run.html.stem)
    assert {p.name for p in folder.iterdir()} == {f"{ok_run.html.stem}.{e}"
                                                 for e in ("ipynb", "html", "json")}
    summary = json.loads(ok_run.json.read_text())
    assert summary["format_version"] == reports.FORMAT_VERSION
    assert (summary["name"], summary["status"], summary["error"]) == ("ok", "ok", None)
    assert summary["parameters"] == {"n": 4}
    assert summary["started_at"] <= summary["finished_at"]
    env = summary["environment"]
    assert env["tsj_lab"] and env["cpu_count"] >= 1 and len(env["git_commit"]) == 40
    assert env["database"]["license"] == "timescale"
    assert env["database"]["postgres_version_num"] >= 170000
    assert env["database"]["timescaledb_version"]
    assert summary["metrics"] == [{"name": "answer", "value": 42.0, "unit": "things", "n": 4,
                                   "params": {"title": "ok"}}]
    assert summary["checks"][0] == {"name": "arithmetic", "status": "ok",
                                         "detail": "1 + 1 == 2", "scope": {}}
    assert summary["results"][0]["workload"] == "toy" and summary["results"][0]["n"] == 4
    assert summary["tables"][0]["rows"][-1] == {"x": 3, "y": 9}


def test_html_is_offline_and_has_no_record_junk(ok_run: reports.Report) -> None:
    page = ok_run.html.read_text()
    assert not re.search(r"<script[^>]*\bsrc=[\"']https?:", page), "a script from the network"
    assert not re.search(r"<link[^>]*\bhref=[\"']https?:", page), "a stylesheet from the network"
    assert recording.RECORD_MIME not in page and "vnd.tsj" not in page
    assert "Plotly.newPlot" in page and "A small report" in page
    assert "renderers.default" not in page and "record_metric" not in page  # inputs hidden
    # the heading: a time in UTC, the parameters one per row (a bench's 30 ran on as one line)
    assert re.search(r"Run \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", page)
    assert "<summary>Parameters: 1 passed" in page
    assert "<tr><td><code>n</code></td><td><code>4</code></td></tr>" in page
    # the executed notebook keeps the records (that is where the JSON came from)
    nb = nbformat.read(str(ok_run.notebook), as_version=4)
    assert recording.collect(nb)["metrics"][0]["name"] == "answer"


@pytest.mark.slow
def test_html_report_renders_plotly_in_headless_chromium(ok_run: reports.Report) -> None:
    dom = rendered_dom(ok_run.html)
    assert 'class="main-svg"' in dom, "plotly did not draw: no main-svg in the rendered DOM"
    assert "plot-container" in dom


def test_index_lists_the_run(ok_run: reports.Report) -> None:
    index = ok_run.html.parent.parent / "index.html"
    page = index.read_text()
    assert f"{ok_run.html.parent.name}/{ok_run.html.name}" in page
    assert "No figure recorded by two runs yet" in page  # one run: no trend to draw


def test_failing_notebook_still_writes_its_report(tmp_path: Path, server: Embedded) -> None:
    with pytest.raises(ReportError, match=r"'fail' failed in cell 3: AssertionError: "
                                          r"arithmetic is broken; see .*\.html"):
        reports.run("fail", settings=Settings.load(),
                    notebooks_dir=FIXTURES, reports_dir=tmp_path)
    (summary_path,) = tmp_path.glob("*/*-fail.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == {"cell": 3, "ename": "AssertionError",
                                "evalue": "arithmetic is broken"}
    assert summary["metrics"][0]["name"] == "before"  # records made before the failure count
    page = summary_path.with_suffix(".html").read_text()
    assert "arithmetic is broken" in page and "AssertionError" in page
    assert "assert 1 + 1 == 3" in re.sub(r"<[^>]+>", "", page)  # the failing cell's code shows
    assert "never reached" not in re.sub(r"<[^>]+>", "", page)
    assert summary_path.with_suffix(".ipynb").stat().st_size > 0
    assert 'class="failed"' in (tmp_path / "index.html").read_text()


def test_cli_report_types_parameters_and_exits_nonzero_on_failure(
        tmp_path: Path, server: Embedded, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = ["--notebooks-dir", str(FIXTURES), "--reports-dir", str(tmp_path)]
    assert main(["report", "fail", *dirs]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tsj: error: notebook 'fail' failed") and err.count("\n") == 1
    assert main(["reports", "list", "--reports-dir", str(tmp_path)]) == 0
    assert "failed" in capsys.readouterr().out


def test_same_second_runs_get_their_own_files(tmp_path: Path) -> None:
    now = datetime(2026, 1, 18, 9, 30, 5, tzinfo=UTC)
    first = reports.claim(tmp_path, "04_bench", now=now)
    second = reports.claim(tmp_path, "04_bench", now=now)
    assert first["ipynb"].name == "093005-04_bench.ipynb"
    assert second["ipynb"].name == "093005-04_bench-2.ipynb"
    assert first["ipynb"].parent.name == "2026-01-18"


def _fake_run(folder: Path, stem: str, started: str, value: float, status: str = "ok", *,
              parameters: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"format_version": 1, "name": "04_bench", "status": status, "error": None,
               "started_at": started, "finished_at": started, "duration_s": 1.0,
               "parameters": parameters or {}, "environment": {"database": {"edition": "timescaledb-apache"}},
               "metrics": [{"name": "rows_per_s", "value": value, "unit": "rows/s", "n": 10,
                            "params": {}}],
               "checks": [], "results": [], "tables": []}
    (folder / f"{stem}.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_index_is_regenerated_newest_first(tmp_path: Path) -> None:
    _fake_run(tmp_path / "2026-01-17", "080000-04_bench", "2026-01-17T08:00:00+00:00", 100.0)
    _fake_run(tmp_path / "2026-01-18", "080000-04_bench", "2026-01-18T08:00:00+00:00", 150.0)
    (tmp_path / "2026-01-18" / "junk.json").write_text("{not json")
    page = html.write_index(tmp_path).read_text()
    newer, older = "2026-01-18/080000-04_bench.html", "2026-01-17/080000-04_bench.html"
    assert page.index(newer) < page.index(older)
    assert "04_bench: rows_per_s (rows" in page  # the chart's title
    _fake_run(tmp_path / "2026-01-19", "070000-04_bench", "2026-01-19T07:00:00+00:00", 0, "failed")
    page = html.write_index(tmp_path).read_text()
    assert page.index("2026-01-19/070000-04_bench.html") < page.index(newer)
    series = html.trend_series(html.runs(tmp_path))["04_bench: rows_per_s (rows/s)"]
    assert [p["value"] for p in series] == [0, 150.0, 100.0]
    dom = rendered_dom(tmp_path / "index.html")
    assert dom.count('class="main-svg"') >= 1 and "trace scatter" in dom


def test_trends_never_join_runs_of_other_parameters(tmp_path: Path) -> None:
    for day, value, samples in (("17", 100.0, 30), ("18", 150.0, 30), ("19", 9000.0, 5)):
        _fake_run(tmp_path / f"2026-01-{day}", "080000-04_bench", f"2026-01-{day}T08:00:00+00:00",
                  value, parameters={"samples": samples, "symbols": ["ES"]})
    all_runs = html.runs(tmp_path)
    full, quick = html.parameter_tag(all_runs[1]), html.parameter_tag(all_runs[0])
    assert full == html.parameter_tag(all_runs[2]) != quick
    charts = html.trend_series(all_runs)
    assert sorted(charts) == sorted([f"04_bench {full}: rows_per_s (rows/s)",
                                     f"04_bench {quick}: rows_per_s (rows/s)"])
    assert [p["value"] for p in charts[f"04_bench {full}: rows_per_s (rows/s)"]] == [150, 100]
    page = html.write_index(tmp_path).read_text()
    assert f"04_bench {full}: rows_per_s" in page
    assert f"04_bench {quick}: rows_per_s" not in page  # one run: no trend yet
    assert "samples=5, symbols=[&#39;ES&#39;]" in page  # the runs table says what a tag means


def _password(server: Embedded) -> str:
    return server.passfile.read_text().strip().rsplit(":", 1)[1]


def test_a_password_never_reaches_any_artifact(tmp_path: Path, server: Embedded,
                                                target_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    password = _password(server)
    url = target_url.replace("tsj@", f"tsj:{password}@", 1).split("?", 1)[0]
    monkeypatch.setenv("TSJ_DATABASE_URL", url)
    # the leaky notebook prints the URL, shows it in a table and records it
    summary = reports.run("leak", settings=Settings.load(),
                          notebooks_dir=FIXTURES, reports_dir=tmp_path).summary
    assert summary["environment"]["database"]["license"] == "timescale"  # it did connect
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 4  # ipynb, html, json, index.html
    for path in files:
        assert password not in path.read_text(errors="replace"), f"password in {path.name}"
    page = tmp_path / summary["started_at"][:10] / summary["files"]["html"]
    assert "tsj:***@" in page.read_text()


def test_the_pooler_password_never_reaches_any_artifact(tmp_path: Path, server: Embedded,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """TSJ_POOLER_URL reaches the kernel too (config.child_env): its password is scrubbed."""
    password = "pooler-s3cret-pw"
    monkeypatch.setenv("TSJ_POOLER_URL", f"postgresql://tsj:{password}@127.0.0.1:6432/tsj")
    assert password in environment.secrets_of(Settings.load())
    # the leaky notebook prints the pooler's conninfo as a dict, which no URL pattern finds
    summary = reports.run("leak", settings=Settings.load(),
                          notebooks_dir=FIXTURES, reports_dir=tmp_path).summary
    assert summary["status"] == "ok"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.suffix for p in files) == [".html", ".html", ".ipynb", ".json"]
    for path in files:
        assert password not in path.read_text(errors="replace"), f"password in {path.name}"
    notebook = next(p for p in files if p.suffix == ".ipynb").read_text()
    assert "'password': '***'" in notebook  # it was printed, and scrubbed


def test_cli_target_reaches_the_kernel_without_changing_this_environment(
        tmp_path: Path, server: Embedded, target_url: str) -> None:
    password = _password(server)
    # another form than the environment's URL (no passfile): the kernel must get this one
    url = target_url.replace("tsj@", f"tsj:{password}@", 1).split("?", 1)[0]
    assert url != os.environ["TSJ_DATABASE_URL"]
    before = dict(os.environ)
    assert main(["report", "leak", "--target", url, "--notebooks-dir", str(FIXTURES),
                 "--reports-dir", str(tmp_path)]) == 0
    assert dict(os.environ) == before
    (summary_path,) = tmp_path.glob("*/*-leak.json")
    summary = json.loads(summary_path.read_text())
    # the leaky notebook records the TSJ_DATABASE_URL its kernel was started with
    assert summary["checks"][0]["detail"] == redact(url)
    assert summary["environment"]["database"]["url"] == redact(url)
    for path in tmp_path.rglob("*.*"):
        assert password not in path.read_text(errors="replace"), f"password in {path.name}"


def test_a_url_with_a_password_is_refused_as_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parameter 'target' carries a secret") as err:
        reports.run("ok", settings=Settings.load(),
                    parameters={"target": "postgresql://u:s3cretpw@db:5432/x"},
                    notebooks_dir=FIXTURES, reports_dir=tmp_path)
    assert "s3cretpw" not in str(err.value)
    with pytest.raises(ValueError, match="'api_token' carries a secret"):
        reports.check_parameters({"api_token": "abc"})
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_unknown_parameter_and_notebook_fail_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"notebook 'ok' has no parameter 'symbl'; its "
                                         r"parameters are \['n', 'target', 'title'\]"):
        reports.run("ok", settings=Settings.load(),
                    parameters={"symbl": "ES"}, notebooks_dir=FIXTURES,
                    reports_dir=tmp_path)
    with pytest.raises(ValueError, match=r"notebook 'nope' not found in .*; known: fail, leak, ok"):
        reports.notebook_path("nope", notebooks_dir=FIXTURES)


def test_a_connection_parameter_must_name_a_connection(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"notebook 'ok' parameter 'target' is 'prod', not a "
                                         r"connection; use one of " + re.escape(str(CONNECTION_NAMES))):
        reports.run("ok", settings=Settings.load(),
                    parameters={"target": "prod"}, notebooks_dir=FIXTURES,
                    reports_dir=tmp_path)
    with pytest.raises(ConfigError, match="parameter 'target' 'mysql://h/db' is not a PostgreSQL"):
        reports.check_parameters({"target": "mysql://h/db"}, notebook="notebook 'ok'")
    assert reports.check_parameters({"target": "source", "source": "postgresql://u@h/db"})
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_command_line_values_are_typed_like_the_defaults() -> None:
    declared = reports.notebook_parameters(FIXTURES / "ok.ipynb")
    typed = reports.coerce_parameters({"n": "7", "title": "2024", "target": "source"}, declared)
    assert typed == {"n": 7, "title": "2024", "target": "source"}
    # a default that is an expression, not a string literal: values are parsed
    declared = {"interactive": {"default": '"JPY_SESSION_NAME" in os.environ'},
                "symbol": {"default": "None"}}
    typed = reports.coerce_parameters({"interactive": "False", "symbol": "ES"}, declared)
    assert typed == {"interactive": False, "symbol": "ES"}


def test_a_command_line_value_of_the_wrong_kind_fails_up_front() -> None:
    declared = {"samples": {"default": "5"}, "symbols": {"default": '["ES"]'},
                "refresh": {"default": "True"}, "duration_s": {"default": "10.0"}}
    with pytest.raises(ValueError, match=r"notebook 'b' parameter 'samples' takes a whole "
                                         r"number like 5; got 'abc'"):
        reports.coerce_parameters({"samples": "abc"}, declared, notebook="notebook 'b'")
    with pytest.raises(ValueError, match=r"'symbols' takes a list like \['ES'\]; got 'ES'"):
        reports.coerce_parameters({"symbols": "ES"}, declared)
    with pytest.raises(ValueError, match="'refresh' takes True or False"):
        reports.coerce_parameters({"refresh": "1"}, declared)
    typed = reports.coerce_parameters({"duration_s": "5", "symbols": "['ES', 'NQ']"}, declared)
    assert typed == {"duration_s": 5, "symbols": ["ES", "NQ"]}


def test_secrets_come_from_the_configured_urls() -> None:
    settings = Settings(target_url="postgresql://u:longsecret@h/db",
                        source_url="postgresql://u@h/db?password=othersecret",
                        pooler_url="postgresql://u:p%40oler@h:6543/db",
                        live_url="postgresql://u:livepass1@h/db")
    assert environment.secrets_of(settings) == ["othersecret", "longsecret", "livepass1",
                                                "p%40oler", "p@oler"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="longsecret othersecret\n")]
    environment.scrub(nb, secrets=environment.secrets_of(settings))
    assert nb.cells[0].outputs[0].text == "*** ***\n"
