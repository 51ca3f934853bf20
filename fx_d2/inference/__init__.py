"""Using a trained FoundationX without training it: the predictor (weights, the test mapper's
geometry, one forward per dataset's heads) and its outputs."""

from .predictor import FXPredictor, outputs_to_json

__all__ = ["FXPredictor", "outputs_to_json"]
