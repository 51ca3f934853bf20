"""fx_d2.data.sources."""
