"""One-time builds into the cache, done by several threads and processes at once on an empty cache:
what `make demo` does on a fresh machine (its servers start in parallel threads), and what two
`make` runs sharing one cache do. Every caller must get the complete result; none may fail."""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests.infra.locales import FLEXIBLE_LOCALE, WINDOWS_LOCALE

ROOT = Path(__file__).resolve().parents[1]

# Each process starts its threads together and prints what each one got (or its error).
RACE = textwrap.dedent("""
    import threading
    from tests.infra.locales import locpath
    start, results = threading.Barrier({threads}), []
    def one():
        start.wait()
        try:
            results.append(str(locpath()))
        except Exception as exc:
            results.append(f"ERROR {{exc!r}}")
    workers = [threading.Thread(target=one) for _ in range({threads})]
    for w in workers: w.start()
    for w in workers: w.join()
    print("\\n".join(results))
""")


def test_locales_built_by_many_threads_and_processes_at_once(tmp_path):
    cache = tmp_path / "cache"  # empty: nothing built yet
    env = dict(os.environ, AZEXT_PGDUMP_CACHE=str(cache), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", RACE.format(threads=3)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    results = [line for out, _ in outputs for line in out.splitlines()]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert results == [str(cache / "locales-v1")] * 6, results
    for name in (WINDOWS_LOCALE, FLEXIBLE_LOCALE):
        assert (cache / "locales-v1" / name / "LC_CTYPE").is_file()
        assert (cache / "locales-v1" / name / "LC_COLLATE").stat().st_mode & 0o004  # the server user reads it
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["locales-v1"]  # no leftovers


def test_built_once_builds_once_for_many_threads(tmp_path):
    from tests.infra.cache import built_once  # the shared helper every build into the cache goes through
    builds, start, results = [], threading.Barrier(8), []

    def build(work):
        builds.append(work)
        time.sleep(0.3)  # long enough for every thread to find nothing built yet
        (work / "tree").mkdir()
        (work / "tree" / "done").write_text("ok")
        return work / "tree"

    def one():
        start.wait()
        results.append(built_once(tmp_path / "thing", build, done=lambda d: (d / "done").exists()))

    workers = [threading.Thread(target=one) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(builds) == 1 and results == [tmp_path / "thing"] * 8
    assert (tmp_path / "thing" / "done").read_text() == "ok"
