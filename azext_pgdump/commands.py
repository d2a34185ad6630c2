"""The command table of `az postgres dumprestore`. Only verbs that work are registered."""
from azext_pgdump._validators import validate_server_reference


def _databases_table(result):
    return [{"Name": d["name"], "Charset": d["charset"], "Collation": d["collation"],
             "Migrated by default": "yes" if d["migratable"] else "no"} for d in result]


def load_command_table(self, _):
    with self.command_group('postgres dumprestore', is_preview=True) as g:
        g.custom_command('list-databases', 'list_databases', validator=validate_server_reference,
                         table_transformer=_databases_table)
