"""AnalyticsService: delivery attempts aggregated per tenant."""
