"""detect: chest X-ray pneumonia detection on RSNA DICOMs and Kermany JPEGs (the torch layer).

Layers, each importing only from those below it (docs/architecture.md draws them):

    demo.py        the whole pipeline on synthetic data
    training/      the loop (train_one_epoch beside evaluate), optimiser, run folder, DDP
    evaluation/    metrics, scoring, `detect eval`, the report
    inference/     the ONE predictor, post-processing, `detect infer` batch runs
    outputs/       boxes.json + schema, submission CSV, overlays, plots
    models/        registry, detector, heads, backbones, weights, checkpoints, RoIAlign
    data/          preprocessing (prepare_image), dataset, sampling, transforms, file reading
    config.py, devices.py, distributed.py, predictions.py   the checked config, the device, torchrun, the typed records

data_prep/ (no torch) is below all of them. The Python API is one class:

    from detect import Detector
    entry = Detector.from_checkpoint("runs/demo/checkpoints/best.pt").predict("scan.dcm")
"""
from detect.inference.api import Detector

__all__ = ["Detector"]
