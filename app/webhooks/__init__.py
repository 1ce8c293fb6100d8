"""Signed webhooks: events written with the changes that cause them, delivered by beat."""
