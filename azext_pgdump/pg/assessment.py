"""What each source database holds that decides whether a migration to Flexible Server can work, read in
one connection per database: extensions, relation count, objects the login cannot read (pg_dump would
stop), and the blockers of Microsoft's PostgreSQL migration assessment that apply to dump and restore."""
from dataclasses import dataclass, field

from azext_pgdump.pg import catalog
from azext_pgdump.pg.sql import user_schema, users_own
from azext_pgdump.pg.preflight import Check, _ok
from azext_pgdump.pg.roles import is_service_role

_USER_SCHEMA = user_schema()
# Before 16 a child table's column could be generated while its parent's is not; 16 refuses to create such a
# child ("A child table column cannot be generated unless its parent column is"), so the table is not restored.
_GENERATED_CHILD = f"""
    SELECT format('%I.%I.%I (inherits from %I.%I)', n.nspname, c.relname, a.attname, pn.nspname, pc.relname)
    FROM pg_inherits i JOIN pg_attribute a ON a.attrelid = i.inhrelid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = a.attname AND NOT pa.attisdropped
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
    WHERE a.attgenerated <> '' AND pa.attgenerated = '' AND {_USER_SCHEMA} ORDER BY 1"""
GENERATED_SINCE, GENERATED_STRICT_SINCE = 12, 16
# What pg_upgrade also refuses, where a dump and restore fails the same way (its checks of sources before 12
# and before 14): postfix operators (gone in 14), the abstime/reltime/tinterval types (gone in 12), and
# aggregates or operators built on array functions whose arguments became anycompatible in 14.
_OLD_ARRAY_FN = r"'^(array_(append|prepend|cat|position|positions|remove|replace)|width_bucket)\(.*any(array|element)'"
BEFORE_MAJOR = {
    'postfix_operators': (14, f"""
        SELECT format('%s.%s (%s)', n.nspname, o.oprname, o.oprleft::regtype) FROM pg_operator o
        JOIN pg_namespace n ON n.oid = o.oprnamespace
        WHERE o.oid >= 16384 AND o.oprright = 0 AND o.oprleft <> 0 AND {_USER_SCHEMA}
          AND {users_own('pg_operator', 'o.oid')} ORDER BY 1"""),
    'removed_types': (12, f"""
        SELECT format('%I.%I.%I (%s)', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod))
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'v', 'f', 'c')
          AND format_type(a.atttypid, NULL) IN ('abstime', 'reltime', 'tinterval') AND {_USER_SCHEMA}
        ORDER BY 1"""),
    'polymorphics': (14, f"""
        SELECT p.oid::regprocedure::text FROM pg_aggregate g JOIN pg_proc p ON p.oid = g.aggfnoid
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER_SCHEMA} AND {users_own('pg_proc', 'p.oid')}
          AND (g.aggtransfn::regprocedure::text ~ {_OLD_ARRAY_FN}
            OR g.aggfinalfn::regprocedure::text ~ {_OLD_ARRAY_FN})
        UNION ALL
        SELECT format('operator %s.%s', n.nspname, o.oprname) FROM pg_operator o
        JOIN pg_namespace n ON n.oid = o.oprnamespace
        WHERE o.oid >= 16384 AND {_USER_SCHEMA} AND {users_own('pg_operator', 'o.oid')}
          AND o.oprcode::regprocedure::text ~ {_OLD_ARRAY_FN}
        ORDER BY 1"""),
}

QUERIES = {
    # pg_dump reads every table, sequence and materialized view, and needs USAGE on their schemas.
    'unreadable': f"""
        SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm', 'S', 'f') AND {_USER_SCHEMA}
          AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT'))
          AND {users_own('pg_class', 'c.oid')}
        ORDER BY 1""",
    # pg_dump dumps CREATE COLLATION, which the admin may run: what fails is a provider or a locale the target
    # lacks (see collations()).
    'collations': f"""
        SELECT format('%I.%I', n.nspname, c.collname), c.collprovider, c.collcollate, c.collctype
        FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
        WHERE {_USER_SCHEMA} AND {users_own('pg_collation', 'c.oid')} ORDER BY 1""",
    # Not the casts CREATE TYPE ... AS RANGE makes itself (range -> multirange, 14+): pg_dump never dumps those.
    'casts': f"""
        SELECT format('%s AS %s', castsource::regtype, casttarget::regtype) FROM pg_cast c
        WHERE c.oid >= 16384 AND {users_own('pg_cast', 'c.oid')}""",
    'text_search': f"""
        SELECT 'template ' || tmplname FROM pg_ts_template t WHERE t.oid >= 16384
          AND {users_own('pg_ts_template', 't.oid')}
        UNION ALL SELECT 'parser ' || prsname FROM pg_ts_parser p WHERE p.oid >= 16384
          AND {users_own('pg_ts_parser', 'p.oid')}""",
    'superuser_owned': f"""
        SELECT format('%I.%I', n.nspname, c.relname), r.rolname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
        WHERE r.rolsuper AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMA}
          AND {users_own('pg_class', 'c.oid')} ORDER BY 1""",
    'tablespaces': """
        SELECT DISTINCT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
        WHERE t.spcname NOT IN ('pg_default', 'pg_global')""",
    'languages': f"""
        SELECT lanname FROM pg_language l WHERE lanname NOT IN ('internal', 'c', 'sql', 'plpgsql')
          AND {users_own('pg_language', 'l.oid')}""",
    # pg_dump writes a child table as CREATE TABLE ... INHERITS, which puts the inherited columns first: a child
    # whose own columns came first (or whose parent got columns later) arrives with another column order.
    'column_order': f"""
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMA} AND {users_own('pg_class', 'c.oid')}
          AND EXISTS (SELECT 1 FROM pg_attribute own, pg_attribute inherited
                      WHERE own.attrelid = c.oid AND inherited.attrelid = c.oid AND own.attnum > 0
                        AND NOT own.attisdropped AND NOT inherited.attisdropped AND own.attinhcount = 0
                        AND inherited.attinhcount > 0 AND own.attnum < inherited.attnum)
        ORDER BY 1""",
    # PostgreSQL 17 builds indexes and refreshes materialized views with search_path = pg_catalog, pg_temp.
    'unsafe_search_path': f"""
        SELECT DISTINCT format('%I.%I', n.nspname, p.proname) FROM pg_depend d
        JOIN pg_proc p ON p.oid = d.refobjid AND d.refclassid = 'pg_proc'::regclass
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang AND l.lanname IN ('sql', 'plpgsql')
        WHERE {_USER_SCHEMA}
          AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{{}}')) s WHERE s LIKE 'search_path=%')
          AND ((d.classid = 'pg_class'::regclass AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = d.objid))
            OR (d.classid = 'pg_rewrite'::regclass AND EXISTS (
                SELECT 1 FROM pg_rewrite r JOIN pg_class m ON m.oid = r.ev_class
                WHERE r.oid = d.objid AND m.relkind = 'm')))""",
    # Views over the server's own views (pg_stat_*) name their columns, and a newer major may have dropped or
    # moved one (17 moved pg_stat_bgwriter's checkpoint columns to pg_stat_checkpointer): the view then fails to
    # restore. Dependencies on the catalogs themselves (pg_class...) are never recorded: they are pinned.
    'system_columns': f"""
        SELECT DISTINCT format('%I.%I', n.nspname, v.relname), s.relname, a.attname
        FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
        JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace
        JOIN pg_class s ON d.refclassid = 'pg_class'::regclass AND s.oid = d.refobjid
          AND s.relnamespace = 'pg_catalog'::regnamespace
        JOIN pg_attribute a ON a.attrelid = s.oid AND a.attnum = d.refobjsubid
        WHERE d.refobjsubid > 0 AND {_USER_SCHEMA} AND {users_own('pg_class', 'v.oid')} ORDER BY 1, 2, 3""",
}
_RELATIONS = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p', 'm', 'S', 'v', 'f') AND n.nspname NOT IN ('pg_catalog', "
              "'information_schema')")
_LOCK_SLOTS = ("SELECT current_setting('max_locks_per_transaction')::int * (current_setting('max_connections')::int"
               " + current_setting('max_prepared_transactions')::int)")


@dataclass
class Findings:
    database: str
    extensions: dict = field(default_factory=dict)
    relations: int = 0
    lock_slots: int = 0
    found: dict = field(default_factory=dict)   # QUERIES key -> rows


def read(source, databases, major: int) -> list:
    out = []
    for name in databases:
        with catalog.connect(source, name) as conn:
            f = Findings(name, dict(conn.execute("SELECT extname, extversion FROM pg_extension "
                                                 "WHERE extname <> 'plpgsql'").fetchall()),
                         conn.execute(_RELATIONS).fetchone()[0], conn.execute(_LOCK_SLOTS).fetchone()[0])
            for key, query in QUERIES.items():
                f.found[key] = [tuple(r) for r in conn.execute(query).fetchall()]
            for key, (gone, query) in BEFORE_MAJOR.items():
                if major < gone:
                    f.found[key] = [tuple(r) for r in conn.execute(query)]
            if GENERATED_SINCE <= major < GENERATED_STRICT_SINCE:
                f.found['generated_child'] = [tuple(r) for r in conn.execute(_GENERATED_CHILD)]
            if major < 12:
                f.found['with_oids'] = [tuple(r) for r in conn.execute(
                    f"SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                    f"ON n.oid = c.relnamespace WHERE c.relhasoids AND c.relkind = 'r' AND {_USER_SCHEMA}")]
        out.append(f)
    return out


def _each(findings, key):
    return [(f.database, row) for f in findings for row in f.found.get(key, [])]


def _listing(items, limit=5) -> str:
    shown = [f'{row[0]} ({db})' for db, row in items[:limit]]
    return ', '.join(shown) + (f' and {len(items) - limit} more' if len(items) > limit else '')


def readable(findings, login: str) -> Check:
    items = _each(findings, 'unreadable')
    if not items:
        return _ok('source-readable', f'{login} can read every table and sequence pg_dump will dump.')
    owners = sorted({row[1] for _, row in items})
    grantable = [o for o in owners if not is_service_role(o)]
    fix = ' '.join(f'GRANT "{o}" TO "{login}";' for o in grantable)
    fix = (f'On the source, as the server admin: {fix}' if fix else '') + \
        (' Objects owned by Azure service roles cannot be granted: ask for them to be given to your login.'
         if len(grantable) < len(owners) else '')
    return Check('source-readable', 'fail', f'{login} cannot read {_listing(items)}, owned by {", ".join(owners)}: '
                 'pg_dump would stop there.', fix.strip())


_BLOCKERS = [
    # (key, status, what it is, the fix)
    ('casts', 'fail', 'custom casts (creating them needs superuser unless you own a type involved)',
     'Drop them on the source, or re-create them on the target by hand as the owner of the type.'),
    ('text_search', 'fail', 'full-text search templates and parsers (creating them needs superuser)',
     'Use the built-in templates and parsers, or drop these on the source.'),
    ('superuser_owned', 'warn', 'objects owned by a superuser (the target cannot give them that owner)',
     'They are restored owned by your login; or pass --no-owner.'),
    ('tablespaces', 'warn', 'objects in custom tablespaces (Flexible Server has none)',
     'They are restored into the default tablespace; nothing to do unless you rely on the placement.'),
    ('languages', 'fail', 'procedural languages other than plpgsql and sql (not available to the admin)',
     'Rewrite the functions in plpgsql or sql, or use a language Flexible Server offers as an extension.'),
    ('column_order', 'warn', 'child tables whose own columns come before inherited ones (pg_dump recreates them '
     'with the inherited columns first: INSERT ... VALUES without a column list and SELECT * see another order)',
     'Name the columns in the statements that use these tables; the data itself arrives in the right columns.'),
    ('with_oids', 'warn', 'tables WITH OIDS (PostgreSQL 12 removed them: their oid column is not migrated)',
     'If the application reads the oid column, add a real column first: ALTER TABLE ... SET WITHOUT OIDS.'),
]


def blockers(findings) -> list:
    checks = []
    for key, status, what, fix in _BLOCKERS:
        items = _each(findings, key)
        checks.append(Check(f'source-{key.replace("_", "-")}', status, f'The source has {what}: {_listing(items)}.',
                            fix) if items else _ok(f'source-{key.replace("_", "-")}', f'No {what.split(" (")[0]}.'))
    return checks


def search_path_safety(findings, target_major: int) -> Check:
    items = _each(findings, 'unsafe_search_path')
    if target_major < 17 or not items:
        return _ok('search-path-safety', 'No index or materialized view depends on a function without a fixed '
                   'search_path.' if items == [] else f'The target is PostgreSQL {target_major}: nothing to check.')
    return Check('search-path-safety', 'warn',
                 f'Indexes or materialized views use {_listing(items)}, functions with no fixed search_path: '
                 f'PostgreSQL {target_major} builds them with search_path = pg_catalog, so unqualified names in '
                 'them fail.',
                 'Schema-qualify the names in those functions, or on the source: ALTER FUNCTION ... SET '
                 'search_path = <their schema>, pg_catalog;')


def collations(findings, target_locales, target_icu: bool, target_major: int) -> Check:
    """User-defined collations are dumped and restored like any object; only one whose provider or locale the
    target lacks fails (and every column, index and view that uses it with it)."""
    missing = []
    for db, (name, provider, collate, ctype) in _each(findings, 'collations'):
        if provider == 'i' and not target_icu:
            missing.append((db, (f'{name} (ICU; the target has no ICU)',)))
        elif provider == 'b' and target_major < 17:
            missing.append((db, (f'{name} (builtin provider; PostgreSQL {target_major} has none)',)))
        elif provider == 'c' and not {collate, ctype} <= set(target_locales):
            missing.append((db, (f'{name} (locale {collate}, which the target lacks)',)))
    if not missing:
        return _ok('source-collations', 'The target can create every user-defined collation of the source.')
    return Check('source-collations', 'fail', f'The target cannot create the collations {_listing(missing)}.',
                 'On the source, change them to a collation the target has (an ICU one, for example '
                 "CREATE COLLATION ... (provider = icu, locale = 'de-DE')), or migrate the other databases "
                 'with --databases.')


def generated_children(findings, target_major: int) -> Check:
    items = _each(findings, 'generated_child')
    if target_major < GENERATED_STRICT_SINCE or not items:
        return _ok('generated-columns', 'No child table has a generated column whose parent column is not.')
    return Check('generated-columns', 'fail',
                 f'Child tables have generated columns whose parent column is not generated: {_listing(items)}. '
                 f'PostgreSQL {target_major} refuses to create such a child: the table and its data would be '
                 'missing.',
                 'On the source, either make the child column a plain one (ALTER TABLE child ALTER COLUMN c DROP '
                 'EXPRESSION) or the parent column generated too; or migrate the other databases with --databases.')


_GONE = {
    'postfix_operators': ('postfix operators, which PostgreSQL {t} no longer has',
                          'Drop them on the source and use a function or a prefix operator instead.'),
    'removed_types': ('columns of abstime, reltime or tinterval, types PostgreSQL {t} no longer has',
                      'On the source: ALTER TABLE ... ALTER COLUMN ... TYPE timestamptz (abstime), interval '
                      '(reltime).'),
    'polymorphics': ('aggregates or operators built on array functions whose arguments changed in PostgreSQL 14 '
                     '(array_append, array_cat, ... now take anycompatible)',
                     'Drop them on the source and re-create them on the target over the new signatures '
                     '(for example array_append(anycompatiblearray, anycompatible)).'),
}


def gone_in_target(findings, target_major: int) -> list:
    """What a source before 12 or 14 can hold that a target of that major or newer cannot create."""
    checks = []
    for key, (gone, _) in BEFORE_MAJOR.items():
        what, fix = _GONE[key]
        items = _each(findings, key)
        name = key.replace('_', '-')
        if target_major >= gone and items:
            checks.append(Check(name, 'fail', f'The source has {what.format(t=target_major)}: {_listing(items)}.',
                                fix))
        else:
            checks.append(_ok(name, f'Nothing PostgreSQL {target_major} lacks of this kind.'))
    return checks
