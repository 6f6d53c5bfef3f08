"""Recording: what a notebook's cells publish, checked when made, and read back from a notebook."""

from __future__ import annotations

import math

import nbformat
import pytest

from tsj_lab.lab import recording


def test_records_are_checked_and_kept_outside_a_kernel() -> None:
    before = len(recording.recorded())
    recording.record_metric("nan", math.nan, n=0)
    recording.record_check("c", "warn", detail="postgresql://u:pw123456@h/db", where="x")
    got = recording.recorded()[before:]
    assert got[0]["value"] is None  # JSON has no NaN
    assert got[1]["detail"] == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="status 'passed' is unknown"):
        recording.record_check("c", "passed")
    with pytest.raises(ValueError, match="n=-1 is invalid"):
        recording.record_metric("m", 1.0, n=-1)
    with pytest.raises(ValueError, match="is not a number"):
        recording.record_metric("m", "fast")


def test_collect_files_each_record_under_its_kind_in_order() -> None:
    def shown(record: dict) -> nbformat.NotebookNode:
        return nbformat.v4.new_output("display_data", data={recording.RECORD_MIME: record})

    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [shown({"kind": "metric", "name": "a", "value": 1.0}),
                    nbformat.v4.new_output("stream", text="not a record\n"),
                    shown({"kind": "check", "name": "c", "status": "ok"}),
                    shown({"kind": "metric", "name": "b", "value": 2.0}),
                    shown({"kind": "something else", "name": "x"})]
    found = recording.collect(nbformat.v4.new_notebook(cells=[cell]))
    assert found == {"metrics": [{"name": "a", "value": 1.0}, {"name": "b", "value": 2.0}],
                     "checks": [{"name": "c", "status": "ok"}], "results": [], "tables": []}
