"""fx_d2.utils."""
