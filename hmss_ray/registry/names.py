"""Names in the registry, checked wherever they enter: entries, aliases, versions, model URIs.

A model URI names an entry and, after ``@``, an alias or a version::

    outputs/registry/brain                  the entry's default alias (``production``)
    outputs/registry/brain@staging          an alias
    s3://bucket/registry/brain@3f2a9c1e0b7d4a55   a version (16 hex digits: content-addressed)

An entry name is 1-100 characters of letters, digits, ``.``, ``_``, ``-``, starting with a letter
or digit, without ``..``: it can never climb out of the registry or hide as a dot file. Aliases are
lower-case (``production``, ``staging``, ``latest``) and never look like a version id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hmss_ray.config import UserError

ENTRY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
VERSION_RE = re.compile(r"^[0-9a-f]{16}$")
DEFAULT_ALIAS = "production"
ALIAS_ENV = "HMSS_REGISTRY_ALIAS"  # the alias a URI without ``@`` means (default: production)


class RegistryError(UserError):
    """A registry name, entry, alias or version is wrong or missing; the message says which."""


def entry_name(name: str) -> str:
    """``name`` when it is a safe entry name, else :class:`RegistryError`."""
    if not ENTRY_RE.match(name or "") or ".." in name:
        raise RegistryError(
            f"bad registry entry name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or '/'"
        )
    return name


def alias_name(name: str) -> str:
    """``name`` when it is a valid alias (lower case, not a version id)."""
    if not ALIAS_RE.match(name or "") or VERSION_RE.match(name):
        raise RegistryError(
            f"bad alias {name!r}: use 1-40 lower-case letters, digits, '_' or '-', starting with "
            "a letter (e.g. production, staging)"
        )
    return name


def is_version(ref: str) -> bool:
    return bool(VERSION_RE.match(ref))


def default_alias() -> str:
    return alias_name(os.environ.get(ALIAS_ENV) or DEFAULT_ALIAS)


@dataclass(frozen=True)
class ModelRef:
    """``<registry>/<name>[@<ref>]`` split: ``ref`` is an alias, a version id or None."""

    registry: str
    name: str
    ref: str | None

    @property
    def entry(self) -> str:
        return f"{self.registry.rstrip('/')}/{self.name}"

    def at(self, ref: str) -> str:
        return f"{self.entry}@{ref}"


def split_uri(uri: str) -> ModelRef:
    """Split a model URI; the entry name and any alias are validated, nothing is read."""
    text = str(uri).rstrip("/")
    if "/" not in text:
        text = f"./{text}"
    registry, last = text.rsplit("/", 1)
    name, sep, ref = last.partition("@")
    entry_name(name)
    if sep:
        if not ref:
            raise RegistryError(f"{uri!r}: nothing after '@' (name an alias or a version)")
        if not is_version(ref):
            alias_name(ref)
    return ModelRef(registry or "/", name, ref if sep else None)
