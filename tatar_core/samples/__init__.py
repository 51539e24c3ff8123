"""Samples: the dataset spec table, native-format readers; the samples stage (the demo set is in `tatar_core.demo`)."""
