"""fx_d2.checkpoint."""
