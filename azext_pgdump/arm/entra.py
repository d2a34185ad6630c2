"""Microsoft Entra ID sign-in to PostgreSQL: the password is an access token of the current `az login`
for the PostgreSQL resource of the active cloud. A token lives about an hour and a migration may last
longer, so every new connection asks the token source, which renews the token before it expires."""
import threading
import time

from azure.cli.core._profile import Profile

# Renew when this much of a token's life is left (at most): a connection must not start with a token
# that expires while the server checks it.
RENEW_BEFORE_SECONDS = 300


class TokenSource:
    """Callable: a token with enough life left, the cached one if it still has it. Thread-safe (the stream
    method's workers connect at once)."""

    def __init__(self, cli_ctx, clock=time.time):
        self.cli_ctx, self.clock = cli_ctx, clock
        self._lock = threading.Lock()
        self._token, self._renew_at = None, 0.0
        self.fetched = 0

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._token, expires_on = self._fetch()
                now = self.clock()
                self._renew_at = expires_on - min(RENEW_BEFORE_SECONDS, max(expires_on - now, 0) / 2)
                self.fetched += 1
            return self._token

    def _fetch(self):
        resource = self.cli_ctx.cloud.endpoints.ossrdbms_resource_id
        creds, _, _ = Profile(cli_ctx=self.cli_ctx).get_raw_token(resource=resource)
        entry = creds[2] if len(creds) > 2 and isinstance(creds[2], dict) else {}
        return creds[1], float(entry.get('expires_on') or self.clock() + 3600)


_SOURCES = {}


def token_source(cli_ctx) -> TokenSource:
    """One per command: source and target signed in as the same identity share a token."""
    return _SOURCES.setdefault(id(cli_ctx), TokenSource(cli_ctx))


def current_user(cli_ctx) -> str:
    return Profile(cli_ctx=cli_ctx).get_current_account_user()
