"""Arguments of `az postgres dumprestore` verbs."""
from knack.arguments import CLIArgumentType


def load_arguments(self, _):
    from azure.cli.core.commands.parameters import get_enum_type, resource_group_name_type

    # id_part=None: this extension parses --ids itself, so that the server kind can be read from the
    # resource type and a malformed ID gets an error with a recommendation.
    server_name_type = CLIArgumentType(options_list=['--server-name', '-s'], help='Name of the server.')
    server_type_type = CLIArgumentType(
        arg_type=get_enum_type(['auto', 'flexible', 'single']), default='auto',
        help='Kind of server: Flexible Server, Single Server, or `auto` to ask Azure Resource Manager.')
    ids_type = CLIArgumentType(
        options_list=['--ids'],
        help='Full resource ID of the server, for example /subscriptions/SUB/resourceGroups/RG/providers/'
             'Microsoft.DBforPostgreSQL/flexibleServers/NAME. Replaces --resource-group and --server-name.')

    with self.argument_context('postgres dumprestore list-databases') as c:
        c.argument('resource_group_name', resource_group_name_type, id_part=None)
        c.argument('server_name', server_name_type)
        c.argument('server_type', server_type_type)
        c.argument('ids', ids_type)
