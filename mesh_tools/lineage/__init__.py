"""Lineage in the standards lineage backends read: OpenLineage run events (openlineage.py)."""
