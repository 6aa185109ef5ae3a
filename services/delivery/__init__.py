"""DeliveryService: endpoints, deliveries, attempts, retries and dead letters."""
