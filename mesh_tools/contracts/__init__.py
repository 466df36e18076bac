"""Data contracts of the mesh's products in the Open Data Contract Standard (ODCS), exported and tested."""
