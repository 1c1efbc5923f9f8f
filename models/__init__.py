"""The example application's models: ``admin/`` for the platform, ``customer/`` for tenants."""
