"""Catalog predicates written once: what "a user's object" is, for check, verify, the copy and a resume.

A user's object lives in a user schema (not pg_catalog, information_schema, a TOAST or temporary schema) and is
neither part of an extension (pg_dump dumps the CREATE EXTENSION, not its members) nor made by the server for
another object (a range type's multirange casts and constructors, an array type, a table's row type, an
identity column's sequence): those come back by themselves when their owner is restored."""

# No LIKE: the text is used in queries that are run with and without parameters, where % means two things.
_USER_SCHEMA = "{n}.nspname NOT IN ('pg_catalog', 'information_schema') AND {n}.nspname !~ '^pg_(toast|temp_)'"
# A partitioned table depends internally on itself (its partition key columns): that is not made for another object.
_OWN = ("NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass"
        " AND d.objid = {oid} AND d.deptype IN ('e', 'i') AND NOT (d.refclassid = d.classid AND d.refobjid = d.objid))")


def user_schema(namespace: str = 'n') -> str:
    """The namespace alias `namespace` is a user's schema."""
    return _USER_SCHEMA.format(n=namespace)


def users_own(catalog: str, oid: str) -> str:
    """The row `oid` of `catalog` is an object of its own: not an extension's, not made for another object."""
    return _OWN.format(catalog=catalog, oid=oid)


def user_object(catalog: str, oid: str, namespace: str = 'n') -> str:
    return f'{user_schema(namespace)} AND {users_own(catalog, oid)}'
