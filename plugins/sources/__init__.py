"""Source plugins: verify an inbound webhook and normalize it into an event."""
