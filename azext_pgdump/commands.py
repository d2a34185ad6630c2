"""The command table of `az postgres dumprestore`. Only verbs that work are registered."""
from azext_pgdump._validators import validate_cleanup, validate_server_reference


def _databases_table(result):
    return [{"Name": d["name"], "Charset": d["charset"], "Collation": d["collation"],
             "Migrated by default": "yes" if d["migratable"] else "no"} for d in result]


def _migration_table(result):
    if 'steps' in result:  # --dry-run
        return [{"Step": s["name"], "Database": s.get("database", ""), "Description": s["description"]}
                for s in result["steps"]]
    return [{"Database": d["name"], "Status": d["status"], "Method": d["method"],
             "Dump MB": round(d.get("dumpBytes", 0) / 1048576, 1),
             "Seconds": round(sum(d["durations"].values()), 1),
             "Errors (real/harmless)": f'{d.get("errors", {}).get("real", 0)}/{d.get("errors", {}).get("harmless", 0)}',
             **({"Verified": d.get("verify", {}).get("status", "")} if "verify" in result else {}),
             **({"Online": d.get("online", {}).get("status", ""),
                 "Lag s": d.get("online", {}).get("lag", {}).get("seconds", "")}
                if any("online" in x for x in result["databases"]) else {}),
             } for d in result["databases"]]


def _online_end_table(result):
    """cutover and cancel: what became of each database that followed its source."""
    return [{"Database": d["name"], "Status": d["status"], "Caught up s": d.get("caughtUpSeconds", ""),
             "Sequences": d.get("sequences", ""), "Removed": len(d.get("removed", [])),
             "Verified": d.get("verify", {}).get("status", ""), "Error": (d.get("error") or "")[:200]}
            for d in result["databases"]]


def _verify_table(result):
    return [{"Database": d["name"], "Status": d["status"], "Tables": len(d["tables"]),
             "Differences": "; ".join(d["differences"])[:200]} for d in result["databases"]]


def _check_table(result):
    return [{"Check": c["name"], "Status": c["status"], "Message": c["message"], "Fix": c.get("fix") or ""}
            for c in result["checks"]]


def _utilities_table(result):
    return [{"Major": e["major"], "Version": e["version"], "Status": e.get("status", "installed"),
             "Path": e["path"]} for e in result]


def load_command_table(self, _):
    with self.command_group('postgres dumprestore', is_preview=True) as g:
        g.custom_command('list-databases', 'list_databases', validator=validate_server_reference,
                         table_transformer=_databases_table)
        g.custom_command('run', 'migrate', table_transformer=_migration_table)
        g.custom_command('dump', 'dump', table_transformer=_migration_table)
        g.custom_command('restore', 'restore', table_transformer=_migration_table)
        g.custom_command('cleanup', 'cleanup', validator=validate_cleanup)
        g.custom_command('show-commands', 'show_commands')
        g.custom_command('clean-roles', 'clean_roles')
        g.custom_command('clean-dump', 'clean_dump')
        g.custom_command('verify', 'verify', table_transformer=_verify_table)
        g.custom_command('check', 'check', table_transformer=_check_table)
        g.custom_command('install-utilities', 'install_utilities', table_transformer=_utilities_table)
        g.custom_command('cutover', 'cutover', table_transformer=_online_end_table)
        g.custom_command('cancel', 'cancel', table_transformer=_online_end_table)
