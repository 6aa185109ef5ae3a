"""AuthService: tenants, hashed API keys, scopes."""
