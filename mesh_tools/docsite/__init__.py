"""The static documentation site: one catalog of every domain and data product, lineage across projects."""
