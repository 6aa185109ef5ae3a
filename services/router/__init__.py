"""RouterService: stores events, matches each tenant's routes, emits deliveries."""
