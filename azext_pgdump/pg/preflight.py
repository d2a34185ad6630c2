"""Checks before a migration: each passes, warns or fails, with the fix where there is one. Read-only."""
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from azext_pgdump.pg import catalog, locales, planner, tools


@dataclass
class Check:
    name: str
    status: str            # 'pass', 'warn' or 'fail'
    message: str
    fix: Optional[str] = None


def _ok(name, message):
    return Check(name, 'pass', message)


def utilities(found: list, source_major: int, target_major: int, pg_bin_dir=None) -> Check:
    needed = max(source_major, target_major)
    try:
        chosen = tools.choose(found, needed, pg_bin_dir, closest_to=target_major)
        return _ok('utilities', f'PostgreSQL {chosen.version} utilities in {chosen.bindir} fit both servers '
                                f'({source_major} and {target_major}).')
    except tools.ToolsError as err:
        return Check('utilities', 'fail', str(err), planner.utilities_fix(needed))


def target_privileges(conn, roles_wanted: bool) -> list:
    createdb, createrole, super_, pg_admin = conn.execute(
        "SELECT rolcreatedb, rolcreaterole, rolsuper, "
        "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'azure_pg_admin') "
        "AND pg_has_role(current_user, 'azure_pg_admin', 'MEMBER') "
        "FROM pg_roles WHERE rolname = current_user").fetchone()
    user = conn.info.user
    checks = [
        _ok('target-createdb', f'{user} may create databases.') if createdb or super_ else
        Check('target-createdb', 'fail', f'{user} cannot create databases (no CREATEDB).',
              f'ALTER ROLE "{user}" CREATEDB; (as the server admin), or use the admin login.'),
    ]
    if roles_wanted:
        checks.append(_ok('target-createrole', f'{user} may create roles.') if createrole or super_ else
                      Check('target-createrole', 'fail', f'{user} cannot create roles (no CREATEROLE).',
                            'Use the server admin login, or pass --no-roles and create the roles yourself.'))
    checks.append(_ok('target-azure-pg-admin', f'{user} is a member of azure_pg_admin.') if pg_admin or super_ else
                  Check('target-azure-pg-admin', 'warn', f'{user} is not a member of azure_pg_admin: extensions and '
                        'objects owned by other roles may fail to restore.', 'Use the server admin login.'))
    return checks


def extensions(used: dict, target_conn, allow_list: Optional[set], preload: Optional[str],
               fix_allow: str, fix_preload: str) -> list:
    available = {r[0] for r in target_conn.execute('SELECT name FROM pg_available_extensions').fetchall()}
    checks = []
    missing = sorted(set(used) - available)
    if missing:
        checks.append(Check('extensions-available', 'fail', f"The target cannot install {', '.join(missing)}.",
                            'Remove them from the source databases, or choose a target version that offers them.'))
    else:
        checks.append(_ok('extensions-available', f"The target offers every extension the source uses "
                                                  f"({', '.join(sorted(used)) or 'none'})."))
    if allow_list is not None:
        blocked = sorted(set(used) - allow_list)
        checks.append(Check('extensions-allow-list', 'fail',
                            f"Not in the target's azure.extensions allow-list: {', '.join(blocked)}.",
                            fix_allow.replace('VALUE', ','.join(sorted(allow_list | set(used)))))
                      if blocked else _ok('extensions-allow-list', 'Every extension used is allow-listed.'))
    preload_needed = sorted(set(used) & {'pg_cron', 'pg_stat_statements', 'pg_partman_bgw', 'timescaledb',
                                         'pg_hint_plan', 'pgaudit', 'pg_squeeze', 'pg_failover_slots'})
    loaded = {x.strip() for x in (preload or '').split(',') if x.strip()}
    if preload is not None and set(preload_needed) - loaded:
        value = ','.join(sorted(loaded | set(preload_needed)))
        checks.append(Check('shared-preload-libraries', 'fail',
                            f"{', '.join(sorted(set(preload_needed) - loaded))} must be in shared_preload_libraries "
                            'on the target (a restart is needed).', fix_preload.replace('VALUE', value)))
    return checks


def existing_databases(databases, target_names: set, if_exists: str, ours=frozenset()) -> Check:
    clash = planner.clashes(databases, target_names, ours)
    if clash and if_exists == 'fail':
        return Check('target-databases', 'fail', planner.clash_message(clash), planner.EXISTS_FIX)
    return _ok('target-databases', 'No database to migrate exists on the target.' if not clash else
               f"{', '.join(clash)} exist on the target; --if-exists {if_exists} handles them.")


def collations(source_dbs, available: set, overrides: dict) -> Check:
    """Every database run creates needs its locale on the target, or a mapping (see pg/locales.py)."""
    wanted = sorted({(d.name, loc) for d in source_dbs for loc in (d.collate, d.ctype) if loc})
    if not wanted:
        return _ok('collations', 'No database will be created on the target.')
    missing, mapped = [], {}
    for name, loc in wanted:
        new = locales.target_locale(loc, available, overrides)
        if new is None:
            missing.append(f'{loc} ({name})')
        elif new != loc:
            mapped[loc] = new
    # A UTF-8 locale only takes UTF8 databases: a WIN1252 database of a Windows server cannot keep its encoding
    # under en_US.utf8 (the C locale takes any encoding).
    clash = sorted({f'{d.name} ({d.encoding})' for d in source_dbs for loc in (d.collate, d.ctype)
                    if loc in mapped and locales.key(mapped[loc]).endswith('.utf8') and d.encoding != 'UTF8'})
    if clash:
        return Check('encodings', 'fail', f"{', '.join(clash)}: the target's UTF-8 locale takes only UTF8 databases.",
                     "Pass --locale-map 'OLD=C' for their locale (C takes any encoding), or convert the databases "
                     'to UTF8 first.')
    if missing:
        return Check('collations', 'fail', f"The target lacks the locales {', '.join(missing)}, and no mapping "
                     'covers them.', "Pass --locale-map 'OLD=NEW' with a locale the target has (for example "
                     "en_US.utf8), or create the databases yourself and pass --if-exists reuse.")
    if mapped:
        return Check('collations', 'warn', 'The target lacks some source locales; the databases will be created with '
                     + ', '.join(f'{new} instead of {old}' for old, new in sorted(mapped.items())) + '.',
                     'Nothing to do if these match; otherwise pass --locale-map OLD=NEW.')
    return _ok('collations', f"The target has every locale the source databases use "
                             f"({', '.join(sorted({loc for _, loc in wanted}))}).")


def connections(conn, side: str, jobs: int) -> Check:
    max_conn, used = conn.execute("SELECT current_setting('max_connections')::int, "
                                  "(SELECT count(*) FROM pg_stat_activity)").fetchone()
    needed = jobs + 2
    if max_conn - used < needed:
        return Check(f'{side}-connections', 'warn', f'{side}: {max_conn - used} free connections, {needed} needed '
                     f'for --jobs {jobs}.', f'Lower --jobs to {max(max_conn - used - 2, 1)}, or raise max_connections.')
    return _ok(f'{side}-connections', f'{side}: {max_conn - used} free connections for --jobs {jobs}.')


def disk_space(source, databases, work_dir: Path) -> Check:
    total = 0
    with catalog.connect(source) as conn:
        for db in databases:
            total += conn.execute('SELECT pg_database_size(%s)', (db,)).fetchone()[0]
    probe = work_dir if work_dir.exists() else next(p for p in work_dir.parents if p.exists())
    free = shutil.disk_usage(probe).free
    # A dump is usually smaller than the database (no indexes, no bloat): its size is the upper bound.
    if free < total:
        return Check('disk-space', 'fail', f'{probe} has {free // 1048576} MB free; the databases take '
                     f'{total // 1048576} MB, an upper bound for their dumps.',
                     'Free space, or pass --work-dir on a larger disk.')
    return _ok('disk-space', f'{probe} has {free // 1048576} MB free for at most {total // 1048576} MB of dumps.')


def lock_headroom(findings) -> Check:
    worst = max(findings, key=lambda f: f.relations, default=None)
    if worst and worst.relations > worst.lock_slots // 2:
        return Check('lock-headroom', 'warn', f'{worst.database} has {worst.relations} relations; pg_dump locks each '
                     f'one and the source has {worst.lock_slots} lock slots in all.',
                     'Raise max_locks_per_transaction on the source.')
    return _ok('lock-headroom', f'At most {worst.relations if worst else 0} relations in one database: enough lock '
               f'slots ({worst.lock_slots if worst else 0}).')


def as_result(checks: list) -> dict:
    statuses = {c.status for c in checks}
    return {'status': 'failed' if 'fail' in statuses else 'warnings' if 'warn' in statuses else 'passed',
            'checks': [asdict(c) for c in checks]}
