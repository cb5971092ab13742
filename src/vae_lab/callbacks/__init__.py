"""Callbacks: everything that only observes training (pictures, files), kept off the step."""
