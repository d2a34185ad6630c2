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
