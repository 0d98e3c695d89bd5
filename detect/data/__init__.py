"""Images in, model inputs and training samples out: preprocessing, dataset, sampling, augmentation, file reading."""
