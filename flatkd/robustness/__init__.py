"""Robustness suite: image-corruption accuracy (imagecorruptions) and BIM adversarial accuracy."""
