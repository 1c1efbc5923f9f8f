"""The reference application's admin server: platform users, sign-in, billing, settings,
audit. See README.md in this folder."""
