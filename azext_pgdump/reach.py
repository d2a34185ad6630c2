"""Reach a server: resolve it through ARM, connect, and open a temporary firewall rule when the
server's refusal says that is what stands in the way. Wiring between arm/ and pg/, like custom.py."""
import sys
import time
from dataclasses import dataclass
from typing import Optional

from azure.cli.core.azclierror import AzureConnectionError, InvalidArgumentValueError, RequiredArgumentMissingError

from azext_pgdump.arm import entra, firewall
from azext_pgdump.arm.endpoints import SideArgs, resolve
from azext_pgdump.pg import catalog
from azext_pgdump.pg.endpoint import DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Access:
    firewall_rule: str = 'auto'      # 'auto' or 'none'
    client_ip: Optional[str] = None
    yes: bool = False


def _connect_error(err, side):
    return AzureConnectionError(str(err), recommendation=(
        f'Check --{side}-admin-user and --{side}-admin-password, that the server allows your address (its '
        f'firewall rules, or --firewall-rule auto), and the TLS settings (--{side}-ssl-mode).'))


def _probe(endpoint, side, attempts=1):
    """Connect once to prove the endpoint works; libpq may find the password in PGPASSWORD or .pgpass,
    else ask for it on a terminal. Returns the endpoint with the password it needed."""
    for attempt in range(attempts):
        try:
            catalog.connect(endpoint).close()
            return endpoint
        except catalog.ConnectError as err:
            if 'no password supplied' in str(err):
                return _probe(endpoint.with_password(_ask_password(endpoint, side)), side)
            if attempt + 1 == attempts:
                raise
            time.sleep(1 + attempt)  # a new firewall rule can take a moment to apply
    return endpoint


def _ask_password(endpoint, side):
    if not sys.stdin.isatty():
        raise RequiredArgumentMissingError(
            f'No password for {endpoint.user} on {endpoint.name}, and no terminal to ask for one.',
            recommendation=f'Pass --{side}-admin-password, or set PGPASSWORD or a .pgpass entry.')
    from knack.prompting import prompt_pass
    return prompt_pass(f'Password for {endpoint.user} on {endpoint.name}: ')


def reach(cmd, stack, args: SideArgs, password: Optional[str], access: Access):
    """(Endpoint that accepted a connection, ArmServer or None); a temporary firewall rule, if one was
    needed, lives as long as `stack`."""
    endpoint, server = resolve(cmd.cli_ctx, args)
    if args.auth_type == 'entra':
        endpoint = endpoint.with_password_source(entra.token_source(cmd.cli_ctx))
    elif password:
        endpoint = endpoint.with_password(password)
    try:
        return _probe(endpoint, args.side), server
    except catalog.ConnectError as err:
        refused_ip = firewall.client_ip_from_refusal(str(err))
        # --client-ip says who we are, not that the firewall is the problem: a wrong password opens nothing.
        ip = refused_ip and (access.client_ip or refused_ip) or \
            (access.client_ip if 'timeout' in str(err).lower() else None)
        if server is None or ip is None or access.firewall_rule == 'none':
            raise _connect_error(err, args.side) from err
        if server.public_network_access.lower() != 'enabled':
            raise AzureConnectionError(
                f'{server.name} refused {ip}, and it has public network access disabled: firewall rules do not '
                'apply to it.', recommendation='Run the command from a machine in the server\'s virtual network '
                                               '(or peered to it), or through its private endpoint.') from err
        from azure.cli.core.util import user_confirmation
        user_confirmation(f'{server.name} does not admit {ip}. Create a temporary firewall rule for exactly that '
                          'address (removed when the command ends)?', yes=access.yes)
        stack.enter_context(firewall.temporary_rule(cmd.cli_ctx, server, ip))
        try:
            return _probe(endpoint, args.side, attempts=4), server
        except catalog.ConnectError as again:
            raise _connect_error(again, args.side) from again


def side_args(side: str, kw: dict) -> SideArgs:
    """One side's arguments from a verb's keyword arguments (--source-* or --target-*, and the shared ones)."""
    return SideArgs(side=side, server=kw.get(f'{side}_server'),
                    resource_group=kw.get(f'{side}_resource_group') or kw.get('resource_group_name'),
                    server_type=kw.get(f'{side}_server_type') or 'auto', host=kw.get(f'{side}_host'),
                    port=kw.get(f'{side}_port'), user=kw.get(f'{side}_admin_user'),
                    ssl_mode=kw.get(f'{side}_ssl_mode') or 'require', ssl_root_cert=kw.get('ssl_root_cert'),
                    auth_type=kw.get(f'{side}_auth_type') or 'password',
                    timeout=_timeout(kw.get('timeout')))


def _timeout(value) -> int:
    if value is None:
        return DEFAULT_TIMEOUT
    if int(value) < 1:
        raise InvalidArgumentValueError(f'--timeout must be 1 second or more, not {value}.',
                                        recommendation=f'Leave it out for {DEFAULT_TIMEOUT} seconds.')
    return int(value)


def reach_side(cmd, stack, kw, side):
    """reach() for one side, from the verb's own arguments (its locals())."""
    access = Access(kw.get('firewall_rule') or 'auto', kw.get('client_ip'), bool(kw.get('yes')))
    return reach(cmd, stack, side_args(side, kw), kw.get(f'{side}_admin_password'), access)
