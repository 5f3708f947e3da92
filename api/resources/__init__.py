"""HTTP resources: thin adapters from requests to the flows and stores (one module per area)."""
