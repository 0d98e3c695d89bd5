"""The models: the registry, the detector and its heads, backbones, starting weights, checkpoints, RoIAlign."""
