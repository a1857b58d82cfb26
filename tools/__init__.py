"""Tools for the people who change jax_charrnn (python -m tools.side_by_side OLD [NEW])."""
