"""What a trained VAE is measured by, and the pictures of what it learned."""
