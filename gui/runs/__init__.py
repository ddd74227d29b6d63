"""The Runs area: the history of every run, overlaid curves, resume and "Try it"."""
