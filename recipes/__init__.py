"""Built-in recipes, installed as the package ``nstkit.recipes`` (YAML package data)."""
