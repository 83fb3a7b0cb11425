""" "Did you mean ...?" for config typos, with or without Hydra's ``+``.

``protocol.optimiser.lr=1`` fails inside Hydra with "Key 'optimiser' is not in struct";
``+protocol.optimiser.lr=1`` composes and then fails the schema check (benchmark.config). Both
now say which key is unknown, suggest the closest valid one and list the valid keys; so does an
unknown config group option (``method=cnent``: "did you mean 'cnenet'?").
"""

from __future__ import annotations

import re
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from benchmark.config import CONFIG_DIR, compose_config
from benchmark.suggest import did_you_mean, unknown_key_message

OVERRIDE = re.compile(r"Could not override '([^']+)'")


def _failing_key(error: ConfigCompositionException) -> tuple[str, str] | None:
    """(override key, full key of the missing node) of Hydra's "not in struct" failure."""
    match = OVERRIDE.search(str(error))
    full_key = getattr(error.__cause__, "full_key", None)
    if match is None or not full_key or "not in struct" not in str(error.__cause__):
        return None
    return match.group(1), str(full_key)


def group_options(group: str) -> list[str] | None:
    """The options of config group ``group`` (``configs/<group>/*.yaml``), None if no group."""
    folder = CONFIG_DIR / group
    if group.startswith("hydra") or not folder.is_dir():
        return None
    return sorted(path.stem for path in folder.glob("*.yaml"))


def group_hint(overrides: list[str]) -> str | None:
    """The message for the first ``<group>=<option>`` naming no option of a config group
    (``method=cnent``, ``dataset=``, ``protocol=``, ``suite=``, ``+tune=``), else None."""
    for override in overrides:
        key, equals, value = override.partition("=")
        options = group_options(key.lstrip("+~"))
        if not equals or options is None or value in options or key.startswith("~"):
            continue
        group = key.lstrip("+")
        return (
            f"unknown {group} {value!r}{did_you_mean(value, options)}; "
            f"valid {group} names (configs/{group}/): {', '.join(options)}"
        )
    return None


def override_hint(overrides: list[str], config_name: str = "config") -> str | None:
    """The message for the first override naming a key the composed config lacks, or an option
    no config group has, else None.

    Composes the config as Hydra will; any other composition problem (a sweep, an interpolation)
    returns None and is left to Hydra's own message.
    """
    named = group_hint(overrides)
    if named is not None:
        return named
    try:
        compose_config(overrides, config_name=config_name)
        return None
    except ConfigCompositionException as error:
        found = _failing_key(error)
    if found is None:
        return None
    override_key, full_key = found
    rest = [o for o in overrides if o.split("=", 1)[0] != override_key]
    try:
        cfg = compose_config(rest, config_name=config_name)
    except ConfigCompositionException:
        return None
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return None
    message = unknown_key_message(parent, key, [str(k) for k in node])
    return f"{message}. (+{override_key}=... would add the key instead of overriding one.)"


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """The overrides with each sweep (``seed=1,2``, ``range(...)``) cut to its first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]


def exit_on_config_typo(argv: list[str], config_name: str) -> None:
    """Before Hydra runs: exit with a clear message when an override names an unknown key.

    A multirun (``-m``) is checked on its first job's values; Hydra's other options
    (``--config-name``, ``--cfg``, ...) and anything it cannot parse skip the check.
    """
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in argv):
        return
    overrides = [
        a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")
    ]
    try:
        overrides = first_of_sweeps(overrides)
    except OverrideParseException:  # Hydra reports it itself
        return
    hint = override_hint(overrides, config_name)
    if hint is not None:
        sys.exit(f"error: {hint}")
