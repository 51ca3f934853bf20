"""fx_d2.engine."""
