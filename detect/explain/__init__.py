"""Explanations: Grad-CAM heat maps of the classifiers' pneumonia score (`detect infer --explain`)."""
