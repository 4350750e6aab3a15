"""The HTTP API: resolver, routes, error mapping, OpenAPI documentation, upstream compatibility."""
