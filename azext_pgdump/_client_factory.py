"""ARM clients for both server kinds, built the way az's own commands build them."""
from azure.cli.core.commands.client_factory import get_mgmt_service_client

# pylint: disable=import-outside-toplevel


def cf_flexible(cli_ctx, subscription_id=None):
    """The client az's own `postgres flexible-server` commands use, so our calls behave like theirs;
    an older az that lacks it still bundles the one in azure-mgmt-rdbms."""
    try:
        from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
    except ImportError:
        from azure.mgmt.rdbms.postgresql_flexibleservers import PostgreSQLManagementClient
    return get_mgmt_service_client(cli_ctx, PostgreSQLManagementClient, subscription_id=subscription_id)


def cf_single(cli_ctx, subscription_id=None):
    from azure.mgmt.rdbms.postgresql import PostgreSQLManagementClient
    return get_mgmt_service_client(cli_ctx, PostgreSQLManagementClient, subscription_id=subscription_id)


def client_for(cli_ctx, kind, subscription_id=None):
    return (cf_flexible if kind == 'flexible' else cf_single)(cli_ctx, subscription_id)


def firewall_rule_model(kind):
    """FirewallRule of the SDK client_for(kind) uses; every generation takes start/end_ip_address keywords."""
    if kind == 'single':
        from azure.mgmt.rdbms.postgresql.models import FirewallRule
        return FirewallRule
    try:
        from azure.mgmt.postgresqlflexibleservers.models import FirewallRule
    except ImportError:
        from azure.mgmt.rdbms.postgresql_flexibleservers.models import FirewallRule
    return FirewallRule


def configuration_update_model(kind):
    """The body of a server parameter change (Flexible Server only); it takes value= and source= keywords."""
    if kind == 'single':
        from azure.mgmt.rdbms.postgresql.models import Configuration
        return Configuration
    try:
        from azure.mgmt.postgresqlflexibleservers.models import ConfigurationForUpdate
    except ImportError:
        from azure.mgmt.rdbms.postgresql_flexibleservers.models import ConfigurationForUpdate
    return ConfigurationForUpdate
