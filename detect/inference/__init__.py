"""Inference: from any image a user holds to a decision, by one path.

settings.py      InferenceSettings: every choice that decides a prediction, checked once
inputs.py        paths, folders, arrays, PIL images, pydicom Datasets, tensors -> LoadedImage
predictor.py     Predictor: prepare (letterbox) and run (model, boxes back to original pixels)
gating.py        a second model's probability gates and decides (--gate-with)
thresholds.py    which operating point an image gets
postprocess.py   box gating, score threshold, shrink, TTA merge
api.py           Detector: prepare, run, finalize -> Prediction; predict, predict_many
prediction.py    Prediction: the typed result, to_dict (the boxes.json entry), plot
batch.py         detect infer: files -> JSON Lines parts -> boxes.json (+ outputs), resumable
"""
