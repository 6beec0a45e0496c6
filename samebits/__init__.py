"""samebits: same input, same output bits."""
