"""fx_d2.data.demo."""
