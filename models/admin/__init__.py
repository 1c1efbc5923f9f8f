"""Models stored in the admin (platform) database."""
