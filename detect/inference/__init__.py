"""Inference: the one predictor (image -> prediction in original pixels), post-processing, batch runs."""
