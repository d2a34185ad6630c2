"""Database locales a target lacks: Single Servers ran on Windows, so their databases carry names like
`English_United States.1252`, which no Linux server has. Such a name maps to the target's UTF-8 locale
for the same language and country (`en_US.utf8`); `--locale-map OLD=NEW` overrides any mapping.

The mapping covers the language and country names Windows uses in locale names (the ones Azure
Single Server databases were created with); anything else must be given with --locale-map."""
import re
from typing import Optional

LANGUAGES = {
    'arabic': 'ar', 'bulgarian': 'bg', 'catalan': 'ca', 'chinese': 'zh', 'croatian': 'hr', 'czech': 'cs',
    'danish': 'da', 'dutch': 'nl', 'english': 'en', 'estonian': 'et', 'finnish': 'fi', 'french': 'fr',
    'german': 'de', 'greek': 'el', 'hebrew': 'he', 'hindi': 'hi', 'hungarian': 'hu', 'icelandic': 'is',
    'indonesian': 'id', 'italian': 'it', 'japanese': 'ja', 'korean': 'ko', 'latvian': 'lv', 'lithuanian': 'lt',
    'norwegian': 'nb', 'norwegian (bokmål)': 'nb', 'polish': 'pl', 'portuguese': 'pt', 'romanian': 'ro',
    'russian': 'ru', 'serbian': 'sr', 'slovak': 'sk', 'slovenian': 'sl', 'spanish': 'es', 'swedish': 'sv',
    'thai': 'th', 'turkish': 'tr', 'ukrainian': 'uk', 'vietnamese': 'vi',
}
COUNTRIES = {
    'argentina': 'AR', 'australia': 'AU', 'austria': 'AT', 'belgium': 'BE', 'brazil': 'BR', 'bulgaria': 'BG',
    'canada': 'CA', 'chile': 'CL', 'china': 'CN', "people's republic of china": 'CN', 'colombia': 'CO',
    'croatia': 'HR', 'czech republic': 'CZ', 'czechia': 'CZ', 'denmark': 'DK', 'estonia': 'EE', 'finland': 'FI',
    'france': 'FR', 'germany': 'DE', 'greece': 'GR', 'hong kong s.a.r.': 'HK', 'hungary': 'HU', 'iceland': 'IS',
    'india': 'IN', 'indonesia': 'ID', 'ireland': 'IE', 'israel': 'IL', 'italy': 'IT', 'japan': 'JP',
    'korea': 'KR', 'latvia': 'LV', 'lithuania': 'LT', 'luxembourg': 'LU', 'mexico': 'MX', 'netherlands': 'NL',
    'new zealand': 'NZ', 'norway': 'NO', 'peru': 'PE', 'poland': 'PL', 'portugal': 'PT', 'romania': 'RO',
    'russia': 'RU', 'saudi arabia': 'SA', 'serbia': 'RS', 'singapore': 'SG', 'slovakia': 'SK', 'slovenia': 'SI',
    'south africa': 'ZA', 'spain': 'ES', 'sweden': 'SE', 'switzerland': 'CH', 'taiwan': 'TW', 'thailand': 'TH',
    'turkey': 'TR', 'ukraine': 'UA', 'united arab emirates': 'AE', 'united kingdom': 'GB', 'united states': 'US',
    'vietnam': 'VN',
}
# "English_United States.1252", "Chinese (Simplified)_People's Republic of China.936"
_WINDOWS = re.compile(r"^(?P<language>[^_.]+)_(?P<country>[^.]+)\.(?P<codepage>\d+)$")


def key(name: str) -> str:
    """glibc treats en_US.UTF-8 and en_US.utf8 as one locale."""
    return name.lower().replace('utf-8', 'utf8')


def parse_overrides(pairs) -> dict:
    """['OLD=NEW', ...] -> {OLD: NEW}; raises ValueError naming a malformed pair."""
    out = {}
    for pair in pairs or []:
        old, sep, new = pair.partition('=')
        if not sep or not old or not new:
            raise ValueError(f'--locale-map takes OLD=NEW, not {pair!r}.')
        out[old] = new
    return out


def windows_equivalent(name: str) -> Optional[str]:
    match = _WINDOWS.match(name)
    if not match:
        return None
    language = LANGUAGES.get(re.sub(r'\s*\(.*\)$', '', match.group('language')).strip().lower())
    country = COUNTRIES.get(match.group('country').strip().lower())
    return f'{language}_{country}.utf8' if language and country else None


def target_locale(name: str, available: set, overrides: dict) -> Optional[str]:
    """The locale to create a database with on the target: the same if it has it, the mapped one, or None."""
    if name in overrides:
        return overrides[name]
    known = {key(a): a for a in available}
    if not name or key(name) in known:
        return name
    mapped = windows_equivalent(name)
    return known.get(key(mapped)) if mapped else None
