"""The six Switchboard services, one folder each; none imports another."""
