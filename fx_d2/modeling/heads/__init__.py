"""fx_d2.modeling.heads."""
