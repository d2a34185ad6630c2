"""Microsoft Entra ID sign-in to PostgreSQL: the password is an access token of the current `az login`
for the PostgreSQL resource of the active cloud."""
from azure.cli.core._profile import Profile


def access_token(cli_ctx) -> str:
    resource = cli_ctx.cloud.endpoints.ossrdbms_resource_id
    creds, _, _ = Profile(cli_ctx=cli_ctx).get_raw_token(resource=resource)
    return creds[1]


def current_user(cli_ctx) -> str:
    return Profile(cli_ctx=cli_ctx).get_current_account_user()
