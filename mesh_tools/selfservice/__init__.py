"""Self-service: a domain team creates, adopts and upgrades its project without a central team."""
