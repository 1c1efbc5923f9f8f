"""Models stored in the customer (multi-tenant) database."""
