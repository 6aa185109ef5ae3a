"""Destination plugins: send one delivery somewhere."""
