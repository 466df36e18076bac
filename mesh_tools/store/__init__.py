"""The exchange on disk: immutable, versioned releases of data products, published and read like letters.

Layout (every object is written once, then never changed; ``current.json`` is the only object
that is replaced, atomically, so the layout maps onto an object store with conditional writes)::

    <exchange>/
      log.jsonl                                        append-only: publish, consume, expire events
      products/<project>/<model>/<vN|unversioned>/
        current.json                                   {"release_id": ...}: the release consumers read
        releases/<release_id>/release.json             the release descriptor (mesh_tools/model/release.py)
        releases/<release_id>/data.parquet             the data
      receipts/<consumer>.json                         which releases a consumer's last good build read
      leases/<consumer>.json                           which releases a consumer's views point at (since its stitch)
      .tmp/                                            releases being written (never read)
"""
