"""A package's files on a PyPI-style index, and a download checked against the sha256 the index states.

The simple API (PEP 691 JSON, or the PEP 503 HTML every mirror serves: Artifactory, Nexus, devpi, Azure
Artifacts) rather than PyPI's own JSON API, so that `--index-url` or PIP_INDEX_URL can name whatever mirror
pip uses on the machine. urllib honours HTTPS_PROXY/NO_PROXY; REQUESTS_CA_BUNDLE names extra CAs, as for az's
own requests (a proxy that inspects TLS)."""
import base64
import hashlib
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Mapping, Optional
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

DEFAULT_INDEX = 'https://pypi.org/simple/'
ACCEPT = 'application/vnd.pypi.simple.v1+json, text/html;q=0.1'
TIMEOUT = 60            # seconds without a byte before a request fails
CHUNK = 1 << 20


class RegistryError(Exception):
    """The index or the file could not be reached (network, proxy, HTTP error)."""


class DamagedDownload(Exception):
    """What arrived is not what the index said it would be."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: Optional[str]
    yanked: bool = False


def index_url(explicit: Optional[str] = None, environ: Mapping = os.environ) -> str:
    url = explicit or environ.get('PIP_INDEX_URL') or DEFAULT_INDEX
    return url if url.endswith('/') else url + '/'


def redact(url: str) -> str:
    """The URL without a user or token in it (an Azure Artifacts feed carries its PAT there)."""
    parts = urlsplit(url)
    if '@' not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc='***@' + parts.netloc.rsplit('@', 1)[1]))


def _request(url: str, index: str, accept: str = '*/*') -> urllib.request.Request:
    """A request with the index's credentials (user:token@ in its URL), sent only to the index's own host:
    files are often served by another one (files.pythonhosted.org)."""
    parts, index_parts = urlsplit(url), urlsplit(index)
    headers = {'Accept': accept, 'User-Agent': 'azext-pgdump'}
    if index_parts.username and (parts.hostname, parts.port) == (index_parts.hostname, index_parts.port):
        token = f'{unquote(index_parts.username)}:{unquote(index_parts.password or "")}'
        headers['Authorization'] = 'Basic ' + base64.b64encode(token.encode()).decode()
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rsplit('@', 1)[-1]))
    return urllib.request.Request(bare, headers=headers)


def _open(request: urllib.request.Request, environ: Mapping):
    context = ssl.create_default_context(cafile=environ.get('REQUESTS_CA_BUNDLE') or None)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT, context=context)  # nosec: https or a chosen index
    except urllib.error.HTTPError as err:
        raise RegistryError(f'{redact(request.full_url)} answered {err.code} {err.reason}.') from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise RegistryError(f'Could not reach {redact(request.full_url)}{_through(request.full_url)}: '
                            f'{reason}.') from err


def _through(url: str) -> str:
    """Which proxy urllib used (HTTPS_PROXY, unless NO_PROXY exempts the host): half of what a failure means."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    return f' through the proxy {redact(proxy)}' if proxy and not urllib.request.proxy_bypass(parts.hostname) else ''


def list_files(project: str, index: str, environ: Mapping = os.environ) -> list:
    """Every file the index lists for `project`."""
    url = urljoin(index, project + '/')
    with _open(_request(url, index, ACCEPT), environ) as response:
        kind = response.headers.get('Content-Type', '')
        try:
            text = response.read().decode('utf-8')
        except (OSError, UnicodeDecodeError) as err:
            raise RegistryError(f'Could not read {redact(url)}: {err}.') from err
        base = response.geturl()
    return parse_json(text, base) if 'json' in kind else parse_html(text, base)


def parse_json(text: str, base: str) -> list:
    """PEP 691: {"files": [{"filename", "url", "hashes": {"sha256"}, "yanked"}]}; URLs may be relative."""
    return [IndexFile(f['filename'], urljoin(base, f['url']), f.get('hashes', {}).get('sha256'),
                      bool(f.get('yanked'))) for f in json.loads(text).get('files', [])]


class _Links(HTMLParser):
    def __init__(self, base):
        super().__init__()
        self.base, self.files, self._href = base, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'base' and attrs.get('href'):
            self.base = urljoin(self.base, attrs['href'])
        elif tag == 'a' and attrs.get('href'):
            self._href = (attrs['href'], 'data-yanked' in attrs)

    def handle_data(self, data):
        if self._href and data.strip():
            href, yanked = self._href
            url, _, fragment = urljoin(self.base, href).partition('#')
            sha = fragment.split('=', 1)[1] if fragment.startswith('sha256=') else None
            self.files.append(IndexFile(data.strip(), url, sha, yanked))
            self._href = None


def parse_html(text: str, base: str) -> list:
    """PEP 503: one <a href="URL#sha256=HEX">filename</a> per file, data-yanked on withdrawn ones."""
    parser = _Links(base)
    parser.feed(text)
    return parser.files


def download(file: IndexFile, folder: Path, index: str, say: Callable[[str], None] = lambda _: None,
             environ: Mapping = os.environ) -> Path:
    """The file, in `folder`, whose sha256 is the one the index gave; a file that differs is deleted and
    refused, so nothing half-downloaded is ever used."""
    if not file.sha256:
        raise DamagedDownload(f'{redact(index)} gives no sha256 for {file.filename}: it cannot be verified.')
    digest = hashlib.sha256()
    fd, part = tempfile.mkstemp(dir=folder, prefix=f'.{file.filename}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out, _open(_request(file.url, index), environ) as response:
            size = int(response.headers.get('Content-Length') or 0)
            say(f'Downloading {file.filename}' + (f' ({size / 1e6:.1f} MB)' if size else '') +
                f' from {urlsplit(redact(file.url)).netloc}...')
            try:
                for chunk in iter(lambda: response.read(CHUNK), b''):
                    digest.update(chunk)
                    out.write(chunk)
            except OSError as err:  # the connection dropped mid-file
                raise RegistryError(f'The download of {file.filename} broke off: {err}.') from err
        if digest.hexdigest() != file.sha256.lower():
            raise DamagedDownload(f'{file.filename} is damaged: its sha256 is {digest.hexdigest()}, the index '
                                  f'says {file.sha256}; the download was deleted.')
        path = folder / file.filename
        os.replace(part, path)
        return path
    finally:
        if os.path.exists(part):
            os.unlink(part)
