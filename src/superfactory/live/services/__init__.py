"""Services: the control plane's use cases, between the API routes and the store's tables."""
