"""A temporary firewall rule for exactly one client address, always removed when the command ends.

Rules this tool creates carry a recognisable name (prefix, UTC timestamp, random part), so that
`cleanup` can remove what a killed run left behind and nothing else."""
import calendar
import ipaddress
import re
import secrets
import time
from contextlib import contextmanager

from azure.cli.core.azclierror import AzureResponseError
from azure.core.exceptions import HttpResponseError
from knack.log import get_logger

from azext_pgdump._client_factory import client_for, firewall_rule_model
from azext_pgdump.pg.interrupts import shielded

logger = get_logger(__name__)

RULE_PREFIX = 'azext-pgdump-'
_REFUSAL = re.compile(r'no pg_hba\.conf entry for host "([0-9.]+)"')


def client_ip_from_refusal(message: str):
    """The client's public IPv4 address as the server saw it, from a firewall refusal."""
    match = _REFUSAL.search(message)
    if not match:
        return None
    try:
        return str(ipaddress.IPv4Address(match.group(1)))
    except ValueError:
        return None


def new_rule_name() -> str:
    return f"{RULE_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _rules_client(cli_ctx, server):
    return client_for(cli_ctx, server.kind, server.subscription).firewall_rules


def create_rule(cli_ctx, server, ip: str, name: str) -> None:
    rule = firewall_rule_model(server.kind)(start_ip_address=ip, end_ip_address=ip)
    logger.warning('Opening the firewall of %s for %s with the temporary rule %s...', server.name, ip, name)
    try:
        _rules_client(cli_ctx, server).begin_create_or_update(server.resource_group, server.name, name, rule).result()
    except HttpResponseError as err:
        raise AzureResponseError(f'Could not create a firewall rule on {server.name}: {err.message}',
                                 recommendation='You need write access to the server (for example the Contributor '
                                                'role), or add a rule for your address yourself and pass '
                                                '--firewall-rule none.') from err


def delete_rule(cli_ctx, server, name: str) -> None:
    _rules_client(cli_ctx, server).begin_delete(server.resource_group, server.name, name).result()


@contextmanager
def temporary_rule(cli_ctx, server, ip: str):
    """Create the rule; delete it however the block ends (the verb turns SIGTERM into SystemExit).
    The creation itself is inside the try: an interrupt while ARM applies the rule must not leave it."""
    name = new_rule_name()
    try:
        create_rule(cli_ctx, server, ip, name)
        yield name
    finally:
        with shielded():
            try:
                delete_rule(cli_ctx, server, name)  # a rule that was never made deletes as a no-op
                logger.warning('Removed the temporary firewall rule %s from %s.', name, server.name)
            except Exception as err:  # pylint: disable=broad-except
                logger.error('Could not remove the temporary firewall rule %s from %s: %s. Remove it with '
                             '`az postgres dumprestore cleanup -g %s -s %s`.', name, server.name, err,
                             server.resource_group, server.name)


def rule_age_minutes(name: str):
    """Minutes since a rule of ours was created, from its name; None for a name we did not make."""
    match = re.match(re.escape(RULE_PREFIX) + r'(\d{14})-[0-9a-f]{6}$', name)
    if not match:
        return None
    created = calendar.timegm(time.strptime(match.group(1), '%Y%m%d%H%M%S'))  # names carry UTC
    return max(time.time() - created, 0) / 60


def leftover_rules(cli_ctx, server, older_than_minutes: float = 0) -> list:
    """Rules this tool made, at least `older_than_minutes` old (a run still going keeps its rule)."""
    rules = _rules_client(cli_ctx, server).list_by_server(server.resource_group, server.name)
    ages = ((r, rule_age_minutes(r.name)) for r in rules)
    return [r for r, age in ages if age is not None and age >= older_than_minutes]
