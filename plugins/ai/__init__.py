"""AI provider plugins: classify events (and later extract and draft replies)."""
