"""Argument validation that needs no network: it runs before any request is sent."""
from azure.cli.core.azclierror import (InvalidArgumentValueError, MutuallyExclusiveArgumentError,
                                       RequiredArgumentMissingError)

from azext_pgdump.arm.resource_ids import parse_server_id


def validate_server_reference(cmd, namespace):  # pylint: disable=unused-argument
    """Either --ids, or --server-name with a resource group (which may come from `az config`)."""
    if namespace.ids:
        if namespace.server_name:
            raise MutuallyExclusiveArgumentError(
                'Use either --ids or --server-name, not both.',
                recommendation='Pass the full resource ID alone, or --server-name with --resource-group.')
        try:
            ref = parse_server_id(namespace.ids)
        except ValueError as err:
            raise InvalidArgumentValueError(
                str(err),
                recommendation='Copy the ID from `az postgres flexible-server show -g RG -n NAME --query id -o tsv`; '
                               'it looks like /subscriptions/SUB/resourceGroups/RG/providers/'
                               'Microsoft.DBforPostgreSQL/flexibleServers/NAME.') from err
        if namespace.server_type not in ('auto', ref.kind):
            raise InvalidArgumentValueError(
                f"--server-type {namespace.server_type} contradicts the resource ID, which names a {ref.kind} server.",
                recommendation='Leave out --server-type when passing --ids.')
        namespace.resource_group_name, namespace.server_name, namespace.server_type = \
            ref.resource_group, ref.name, ref.kind
        return
    if not namespace.server_name:
        raise RequiredArgumentMissingError(
            'A server is required.',
            recommendation='Pass --server-name NAME with --resource-group RG, or --ids with a full resource ID.')
    if not namespace.resource_group_name:
        raise RequiredArgumentMissingError(
            f"A resource group is required for server '{namespace.server_name}'.",
            recommendation='Pass --resource-group RG, or set a default with `az config set defaults.group=RG`.')


def validate_cleanup(cmd, namespace):
    """Two modes: a server's firewall rules (and a killed run's parameters) through ARM, named by --server-name or
    --ids; or, with --online-leftovers, what online runs left in two servers' catalogs, named by --source-* and
    --target-* (a server outside Azure too). An option of the other mode would silently do nothing: refused."""
    if not namespace.online_leftovers:
        stray = [option for option, value in (
            ('--include-following', namespace.include_following), ('--dry-run', namespace.dry_run),
            ('--source-server', namespace.source_server), ('--source-host', namespace.source_host),
            ('--target-server', namespace.target_server), ('--target-host', namespace.target_host)) if value]
        if stray:
            raise RequiredArgumentMissingError(
                f"{', '.join(stray)} only work with --online-leftovers.",
                recommendation='Add --online-leftovers to find what online runs left on --source-* and --target-*.')
        validate_server_reference(cmd, namespace)
        return
    stray = [option for option, value in (('--server-name', namespace.server_name), ('--ids', namespace.ids),
                                          ('--work-dir', namespace.work_dir), ('--older-than', namespace.older_than))
             if value]
    if stray:
        raise MutuallyExclusiveArgumentError(
            f"--online-leftovers looks in the servers --source-* and --target-* name; {', '.join(stray)} "
            'are for the firewall rules and parameters of one server.',
            recommendation='Run cleanup twice: with --online-leftovers and --source-*/--target-*, and with '
                           '--server-name or --ids for the firewall rules.')
