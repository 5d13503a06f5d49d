"""The model registry: immutable, verified versions, aliases and a change log (docs/registry.md).

Layout and writing: :mod:`.store`; model URIs and names: :mod:`.names`; resolving, verifying and
caching for loading: :mod:`.load`; publishing a checkpoint: :mod:`.entry`; promotion, rollback,
export and import: :mod:`.ops`; when an alias names which version (a promotion's activation
time): :mod:`.pointer`; a Serve replica following its alias: :mod:`.live`; the command:
``python -m hmss_ray.registry``.
"""
