"""The state-aware build: which nodes of a domain must run, and why; the state the next build compares with.

A domain's build state is kept per target in ``<target-path>/mesh-state/<target>/``, apart from
the artifacts every dbt command rewrites: the manifest of its last build, the source freshness
results that build saw, fingerprints of its code, of its landing files and of its storage, and
the nodes still owed a good run (selected once and not yet successful). Right or full: a node may
be skipped only when nothing it depends on can have changed; what cannot be observed runs.

The modules: ``file`` (the state file: schema, one reader, one writer), ``inputs`` (fingerprints of
what a build reads), ``observe`` (what the worker looks at through dbt before planning), ``plan``
(what runs and why, before dbt; when a node runs is written there), ``explain`` (why each node ran,
after), ``record`` (the state the next build compares with), ``quiescence`` (a domain skipped with
no dbt at all: an ordered tuple of checks).
"""
