"""Adapters from `parley.core` to AWS: Lambda routes, DynamoDB (PynamoDB), `@connections`, Powertools, JWT."""
