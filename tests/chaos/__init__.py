"""The chaos suite: a real service under load while its Redis and Simpro fail."""
