"""The story's policies proven by running their jobs (tsj_lab/policies.py), on the
timescale edition; on the apache edition every row says why it cannot run."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tsj_lab.checks import policies
from tsj_lab.provision import schema


@pytest.mark.slow
def test_every_policy_job_runs_and_does_what_the_story_asks(make_db: Callable[..., str]) -> None:
    url = make_db()
    proofs = policies.prove(url)
    assert [p.policy for p in proofs] == [
        "compression", "retention", *(f"{v} refresh" for v in schema.CANDLE_VIEWS)]
    assert policies.failed(proofs) == [], [p.detail for p in proofs]
    assert all(p.job_id and p.seconds > 0 for p in proofs), [(p.job_id, p.seconds) for p in proofs]
    by = {p.policy: p.detail for p in proofs}
    assert "71 of 71 chunks older than 30 days compressed (segmentby symbol" in by["compression"]
    assert "0 of 30 newer ones" in by["compression"]
    assert by["retention"].startswith("11 chunks older than 90 days dropped (0 left)")
    assert "candle_1m of the dropped days: 15,840 of 15,840 kept" in by["retention"]
    assert by["candle_1m refresh"].startswith("49 of 49 buckets") or \
        by["candle_1m refresh"].startswith("48 of 48 buckets")  # 20 s ticks over 48 min
    frame = policies.proofs_frame(proofs)
    assert list(frame.columns) == ["policy", "job_id", "status", "detail", "seconds"]
    # the scratch schema went, with its jobs; the database's own objects were not touched
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace "
                            "WHERE nspname LIKE 'tsj_proof_%'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM timescaledb_information.jobs "
                            "WHERE job_id >= 1000").fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('public.tick_data')").fetchone() == (None,)


def test_a_failing_job_is_a_failed_row_not_an_exception(make_db: Callable[..., str]) -> None:
    url = make_db()
    schema.provision(url)
    with psycopg.connect(url, autocommit=True) as conn:
        proof = policies._run(conn, "retention", {"retention": 987_654},
                              lambda c, before: (True, "never reached"))
        missing = policies._run(conn, "compression", {}, lambda c, before: (True, ""))
    assert proof.status == "fail" and proof.job_id == 987_654
    assert proof.detail.startswith("job 987654 failed: ") and "987654" in proof.detail[20:]
    assert missing.status == "fail" and "no job for this policy" in missing.detail


def test_apache_edition_says_unsupported(make_apache_db: Callable[..., str]) -> None:
    proofs = policies.prove(make_apache_db())
    assert {p.status for p in proofs} == {"unsupported"} and len(proofs) == 6
    assert "drop_chunks" in next(p.detail for p in proofs if p.policy == "retention")


def test_too_few_days_fail_up_front() -> None:
    with pytest.raises(ValueError, match="must exceed the 90-day retention"):
        policies.prove("postgresql://nobody@127.0.0.1:1/none", days=91)
