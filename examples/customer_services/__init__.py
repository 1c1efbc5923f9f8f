"""The reference application's customer services: each tenant's clients, projects and
white-label settings, every route scoped to the tenant of the caller's token. See
README.md in this folder."""
