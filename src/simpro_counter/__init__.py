"""simpro-counter."""
