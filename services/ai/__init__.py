"""AIService: classification (later extraction and replies) through provider plugins."""
