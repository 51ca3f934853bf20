"""fx_d2.modeling.meta_arch."""
