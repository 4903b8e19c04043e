"""HTTP layer: blueprints, forms, htmx helpers, error pages."""
