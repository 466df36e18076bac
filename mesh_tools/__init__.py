"""mesh_tools: run a mesh of dbt projects (one per business domain) as one data mesh."""

__version__ = "0.1.0"
