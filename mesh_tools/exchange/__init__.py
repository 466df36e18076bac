"""Writing releases into the exchange (publish), keeping it small (retention), and who is behind (sync).

The storage layout itself is mesh_tools/store/.
"""
