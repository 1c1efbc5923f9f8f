"""The reference application's gateway: an ASGI reverse proxy in front of the admin server
and the customer services. See README.md in this folder."""
