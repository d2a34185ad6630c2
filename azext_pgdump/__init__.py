"""az postgres dumprestore: migrate Azure Database for PostgreSQL with pg_dump and pg_restore."""
from azure.cli.core import AzCommandsLoader

from azext_pgdump._help import helps  # noqa: F401  pylint: disable=unused-import


class PgDumpRestoreCommandsLoader(AzCommandsLoader):

    def __init__(self, cli_ctx=None):
        from azure.cli.core.commands import CliCommandType
        custom = CliCommandType(operations_tmpl='azext_pgdump.custom#{}')
        super().__init__(cli_ctx=cli_ctx, custom_command_type=custom)

    def load_command_table(self, args):
        from azext_pgdump.commands import load_command_table
        load_command_table(self, args)
        return self.command_table

    def load_arguments(self, command):
        from azext_pgdump._params import load_arguments
        load_arguments(self, command)


COMMAND_LOADER_CLS = PgDumpRestoreCommandsLoader
