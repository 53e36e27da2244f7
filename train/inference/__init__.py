"""A trained run applied to new images: the framing of a user's picture, the top-k, a written
line segmented and read, and the local drawing page."""
