"""Using a trained FoundationX without training it: weights by name or file
(``FXPredictor.from_pretrained``), the predictor (the test mapper's geometry, one forward and one
backbone pass per image for every dataset's heads), named results, and the clinical outputs
(per-image JSON, DICOM SEG / SR, HTML)."""

from .predictor import FXPredictor, outputs_to_json
from .results import Box, DatasetPrediction, dataset_prediction

__all__ = ["FXPredictor", "outputs_to_json", "Box", "DatasetPrediction", "dataset_prediction"]
