"""detect: chest X-ray pneumonia detection on RSNA DICOMs and Kermany JPEGs (the torch layer).

Layers, each importing only from those below it (docs/architecture.md draws them):

    demo.py        the whole pipeline on synthetic data
    training/      the loop (train_one_epoch beside evaluate), optimiser, run folder, DDP
    evaluation/    metrics, scoring, `detect eval`, the report
    inference/     the ONE predictor, post-processing, `detect infer` batch runs
    outputs/       boxes.json + schema, submission CSV, overlays, plots
    models/        registry, detector, heads, backbones, weights, checkpoints, RoIAlign
    data/          preprocessing (prepare_image), dataset, sampling, transforms, file reading
    config.py, devices.py, predictions.py   the checked config, the device, the typed prediction records

data_prep/ (no torch) is below all of them.
"""
