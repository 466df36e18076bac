"""Federated governance: global rules everyone follows plus each domain's own, checked across projects."""
