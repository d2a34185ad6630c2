"""Every verb has help that az can read (knack loads it as YAML: a bad line shows no help at all, and no error
until a user asks for it), a summary and examples that call the verb itself."""
import re
from pathlib import Path

import pytest
import yaml

from azext_pgdump._help import helps

VERBS = re.findall(r"custom_command\('([a-z-]+)'", (Path(__file__).parent.parent / "azext_pgdump" /
                                                     "commands.py").read_text())


def test_every_registered_verb_is_found():
    assert {"run", "cutover", "cancel", "cleanup", "check"} <= set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_the_help_of_each_verb_loads_with_examples_of_it(verb):
    text = helps.get(f"postgres dumprestore {verb}")
    assert text, f"no help for {verb}"
    loaded = yaml.safe_load(text)
    assert loaded["type"] == "command" and loaded["short-summary"]
    assert loaded.get("examples"), f"{verb} has no examples"
    for example in loaded["examples"]:
        assert f"az postgres dumprestore {verb}" in example["text"], example
