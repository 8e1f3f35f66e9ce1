"""Training loops, their callbacks and the steps they run."""
