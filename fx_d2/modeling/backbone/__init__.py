"""fx_d2.modeling.backbone."""
