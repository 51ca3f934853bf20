"""fx_d2.evaluation."""
