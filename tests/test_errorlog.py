"""The errors log judge, fed real logs captured from restores of a PostgreSQL 11 Single Server
(bootstrapped by azure_superuser) into Flexible 16 and 18 as the admin, before the fixes that
made those restores clean, and lines written by hand for the cases a run rarely meets."""
from pathlib import Path

from azext_pgdump.pg import errorlog

LOGS = Path(__file__).parent / "logs"


def read_text(tmp_path, text):
    log = tmp_path / "db.errors.log"
    log.write_text(text)
    return errorlog.read(log)


def test_single_server_restore_as_it_failed_is_real_failure():
    report = errorlog.read(LOGS / "pg_restore-single11-to-flex18-owned-by-login.log")
    assert (report.total, report.harmless, report.real, report.unexplained) == (6, 0, 6, 0)
    assert 'must be able to SET ROLE "azure_superuser"' in report.real_samples[0]
    assert "ALTER SCHEMA public OWNER TO azure_superuser" in report.real_samples[0]  # the statement is named
    assert report.failed(exit_code=1)


def test_flexible_16_adds_only_the_harmless_transaction_timeout():
    report = errorlog.read(LOGS / "pg_restore-single11-to-flex16-owned-by-login.log")
    assert report.by_class["unknown-parameter"] >= 1 and report.real == 6
    cleaned = errorlog.read(LOGS / "pg_restore-single11-to-flex16-cleaned.log")
    assert cleaned.real == 0 and cleaned.harmless == cleaned.total > 0 and cleaned.unexplained == 0
    assert not cleaned.failed(exit_code=1)  # pg_restore exits 1 when it ignored errors


def test_psql_logs_with_echoed_statements():
    report = errorlog.read(LOGS / "psql-single11-to-flex16.log")
    assert report.by_class == {"unknown-parameter": 1, "real": 3}
    assert report.unexplained == 0
    assert any("permission denied for schema shop" in s and "order_log OWNER TO shop_writer" in s
               for s in report.real_samples)


def test_a_harmless_message_on_another_statement_is_real(tmp_path):
    report = read_text(tmp_path,
                       "pg_restore: error: could not execute query: ERROR:  must be owner of extension pg_trgm\n"
                       "Command was: ALTER EXTENSION pg_trgm UPDATE;\n\n"
                       "psql:/w/x.sql:9: ERROR:  must be owner of extension citext\n")  # no statement at all
    assert (report.harmless, report.real) == (0, 2)


def test_warnings_are_counted_and_do_not_fail(tmp_path):
    report = read_text(tmp_path,
                       'psql:/w/x.sql:12: WARNING:  no privileges were granted for "t"\n'
                       "psql:/w/x.sql:13: NOTICE:  table \"x\" does not exist, skipping\n")
    assert (report.total, report.warnings, report.unexplained) == (0, 1, 0)
    assert report.by_class == {"no-privileges": 1} and not report.failed(0)


def test_lost_connection_is_real_even_without_error_prefix(tmp_path):
    report = read_text(tmp_path, "pg_restore: error: could not execute query: server closed the connection "
                                 "unexpectedly\n\tThis probably means the server terminated abnormally\n")
    assert report.real == 1 and report.by_class == {"connection-lost": 1}
    report = read_text(tmp_path, "psql:/w/x.sql:40: FATAL:  terminating connection due to administrator command\n"
                                 "psql:/w/x.sql:40: error: connection to server was lost\n")
    assert report.real >= 1 and report.failed(2)


def test_a_non_zero_exit_with_unexplained_lines_fails(tmp_path):
    text = ("pg_restore: error: could not execute query: ERROR:  must be owner of extension plpgsql\n"
            "Command was: COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';\n\n"
            "something odd happened\n")
    report = read_text(tmp_path, text)
    assert (report.harmless, report.real, report.unexplained) == (1, 0, 1)
    assert report.failed(exit_code=1) and not report.failed(exit_code=0)
    assert report.first_problem() == "something odd happened"
    only_harmless = read_text(tmp_path, text.replace("something odd happened\n", ""))
    assert not only_harmless.failed(exit_code=1)
    assert read_text(tmp_path, "").failed(exit_code=1)  # a failure that says nothing is still a failure


def test_pg_restore_own_failures_are_real_even_beside_harmless_ones(tmp_path):
    report = read_text(tmp_path,
                       "pg_restore: error: could not execute query: ERROR:  must be owner of extension plpgsql\n"
                       "Command was: COMMENT ON EXTENSION plpgsql IS 'x';\n"
                       "pg_restore: error: could not read from input file: end of file\n")
    assert (report.total, report.harmless, report.real) == (2, 1, 1)
    assert "end of file" in report.real_samples[0]


def test_multi_line_statements_stay_with_their_error(tmp_path):
    report = read_text(tmp_path,
                       'psql:/w/x.sql:3: ERROR:  relation "t" already exists\n'
                       "psql:/w/x.sql:3: STATEMENT:  CREATE TABLE t (\n"
                       "\t    id integer\n"
                       "\t);\n"
                       "LINE 1: CREATE TABLE t (\n"
                       "                     ^\n")
    assert (report.real, report.unexplained) == (1, 0)
    assert "CREATE TABLE t" in report.real_samples[0]


def test_missing_errors_log_means_no_errors(tmp_path):
    assert errorlog.read(tmp_path / "none.log").total == 0


def test_lines_of_parallel_workers_that_interleave_are_still_read():
    """Captured from a real `pg_restore -j 2` into Flexible 16: two workers wrote into one line."""
    report = errorlog.read(LOGS / "pg_restore-parallel-workers-interleaved.log")
    assert report.real == 0 and report.unexplained == 0 and report.harmless == report.total == 6
    assert not report.failed(exit_code=1)
